//! Ctrl-C (and SIGTERM) during work that cleans up after itself, such as an
//! unpack with its staging directory and the store it made. While a [`Catch`]
//! lives, the first signal only sets `ferry::interrupt`'s flag, so the work
//! stops at its next read and unwinds through the code that removes what it
//! made; a second signal exits at once. Outside a [`Catch`] the signals do
//! what they always do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells say it).
pub const INTERRUPTED: u8 = 130;

/// True while no [`Catch`] lives: the signals then act as if never handled.
static UNCAUGHT: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(true)));
/// Whether the handlers are registered (once, at the first [`Catch`], so that
/// `serve`, which never makes one, keeps tokio's handling to itself).
static REGISTERED: Mutex<bool> = Mutex::new(false);

/// While it lives, SIGINT and SIGTERM ask the work to stop (see the module doc).
#[must_use = "the signals are caught only while the Catch lives"]
pub struct Catch(());

impl Catch {
    pub fn new() -> std::io::Result<Catch> {
        let mut registered = REGISTERED.lock().expect("interrupt registration lock");
        if !*registered {
            let asked = ferry::interrupt::flag();
            for signal in [SIGINT, SIGTERM] {
                // The order matters: each action sees the flags as the one before
                // it left them.
                signal_hook::flag::register_conditional_default(signal, UNCAUGHT.clone())?;
                signal_hook::flag::register_conditional_shutdown(
                    signal,
                    INTERRUPTED.into(),
                    asked.clone(),
                )?;
                signal_hook::flag::register(signal, asked.clone())?;
            }
            *registered = true;
        }
        UNCAUGHT.store(false, Ordering::SeqCst);
        Ok(Catch(()))
    }
}

impl Drop for Catch {
    fn drop(&mut self) {
        UNCAUGHT.store(true, Ordering::SeqCst);
    }
}
