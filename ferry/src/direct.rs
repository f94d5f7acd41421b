//! Writing large new files around the page cache (`O_DIRECT`). A bundle is written
//! once and read elsewhere, and a store's blobs are read by the registry later, not
//! now: on the machines measured, copying them into the page cache and writing that
//! back cost three times the disk itself (800 MB: 1.9 s buffered with the final
//! sync, 0.6 s direct). The writes are made by a [`Flusher`] thread a few buffers
//! behind the writer, so filling (hashing, decompressing) and the disk overlap; a
//! file may be finished without waiting for its writes.
//! Where the filesystem refuses `O_DIRECT`, or a write for its alignment, ordinary
//! writes are used.

use std::borrow::BorrowMut;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustix::fs::OFlags;

/// Direct writes must start at, and be a multiple of, the device's logical block
/// size and come from memory aligned to it: 4096 covers every common device.
const ALIGN: usize = 4096;
/// Bytes gathered for each direct write: large writes keep the device busy.
const BUFFER: usize = 8 << 20;
/// Buffers of a flusher for one file: one being filled, one being written.
const BUFFERS: usize = 2;
/// Buffers of a flusher for many files finished without waiting: two more, since a
/// file's last bytes hold one of their own until written. With two, unpacking
/// 8 MiB blobs waited for the disk at every blob (1.4-1.6 s against 1.0 s for
/// 784 MiB).
const MANY_BUFFERS: usize = 4;
/// What a filesystem answers for `O_DIRECT` it does not support, or a misaligned write.
const EINVAL: i32 = rustix::io::Errno::INVAL.raw_os_error();

/// Memory for one direct write, aligned within an over-allocated vector.
struct Buffer {
    memory: Vec<u8>,
    start: usize,
}

impl Buffer {
    fn new() -> Buffer {
        let memory = vec![0u8; BUFFER + ALIGN];
        let start = memory.as_ptr().align_offset(ALIGN).min(ALIGN);
        Buffer { memory, start }
    }

    fn bytes(&self, len: usize) -> &[u8] {
        &self.memory[self.start..self.start + len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.memory[self.start..self.start + BUFFER]
    }
}

/// A file being written, shared by its writer and the writes queued for it.
struct Target {
    file: File,
    /// The first of its writes that failed: said for this file when it is finished,
    /// never for whichever file is being written when the write is made.
    failed: Mutex<Option<io::Error>>,
}

impl Target {
    fn fail(&self, e: io::Error) {
        self.failed.lock().unwrap().get_or_insert(e);
    }

    /// The failure so far, said again (it stays for `finish`).
    fn check(&self) -> io::Result<()> {
        match &*self.failed.lock().unwrap() {
            Some(e) => Err(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
            None => Ok(()),
        }
    }
}

/// What becomes of a file once its last bytes are written: the file, or the first
/// error in writing it.
type Then = Box<dyn FnOnce(io::Result<File>) + Send>;

enum Job {
    /// A whole buffer, written direct at `offset`.
    Write {
        target: Arc<Target>,
        offset: u64,
        buffer: Buffer,
    },
    /// A file's last bytes (`len` of `buffer`, if any) at `offset`: whole blocks
    /// direct, the rest the ordinary way; then the file goes to `then`.
    Tail {
        target: Arc<Target>,
        offset: u64,
        buffer: Option<Buffer>,
        len: usize,
        then: Then,
    },
}

/// The thread that makes the writes of [`DirectWriter`]s, in the order they are
/// made, and their buffers.
pub struct Flusher {
    jobs: Option<SyncSender<Job>>,
    /// One message per job done, with its buffer.
    done: Receiver<Option<Buffer>>,
    free: Vec<Buffer>,
    /// How many it may make.
    buffers: usize,
    made: usize,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// A flusher for one file at a time.
    pub fn start() -> Flusher {
        Flusher::with_buffers(BUFFERS)
    }

    /// A flusher for many files, each finished without waiting for its writes
    /// ([`DirectWriter::finish_then`]).
    pub fn for_many_files() -> Flusher {
        Flusher::with_buffers(MANY_BUFFERS)
    }

    fn with_buffers(buffers: usize) -> Flusher {
        let (jobs, rx) = sync_channel::<Job>(buffers);
        // Unbounded, so that this thread never waits for the writer's thread, which
        // may be waiting to queue the next job: a file with nothing to write holds
        // no buffer, so the jobs in flight are not bounded by the buffers.
        let (tx, done) = channel();
        let thread = std::thread::spawn(move || {
            for job in rx {
                let buffer = match job {
                    Job::Write {
                        target,
                        offset,
                        buffer,
                    } => {
                        if let Err(e) = write_at(&target.file, buffer.bytes(BUFFER), offset) {
                            target.fail(e);
                        }
                        Some(buffer)
                    }
                    Job::Tail {
                        target,
                        offset,
                        buffer,
                        len,
                        then,
                    } => {
                        if let Some(b) = &buffer {
                            if let Err(e) = write_tail(&target.file, b.bytes(len), offset) {
                                target.fail(e);
                            }
                        }
                        // Its earlier writes were made (and let go of it) before this
                        // one, and its writer is gone: the file is this job's alone.
                        then(match Arc::try_unwrap(target) {
                            Ok(t) => match t.failed.into_inner().unwrap() {
                                Some(e) => Err(e),
                                None => Ok(t.file),
                            },
                            Err(_) => Err(io::Error::other("the file is still being written")),
                        });
                        buffer
                    }
                };
                if tx.send(buffer).is_err() {
                    return;
                }
            }
        });
        Flusher {
            jobs: Some(jobs),
            done,
            free: Vec::new(),
            buffers,
            made: 0,
            in_flight: 0,
            thread: Some(thread),
        }
    }

    /// A buffer to fill: a free one, a new one, or the next one written.
    fn buffer(&mut self) -> io::Result<Buffer> {
        loop {
            if let Some(b) = self.free.pop() {
                return Ok(b);
            }
            if self.made < self.buffers {
                self.made += 1;
                return Ok(Buffer::new());
            }
            self.wait_one()?;
        }
    }

    fn wait_one(&mut self) -> io::Result<()> {
        let buffer = self.done.recv().map_err(|_| stopped())?;
        self.in_flight -= 1;
        self.free.extend(buffer);
        Ok(())
    }

    fn submit(&mut self, job: Job) -> io::Result<()> {
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        if !sent {
            return Err(stopped());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Waits until every write submitted is made and every finished file handed on.
    pub fn wait(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let _ = self.wait();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the writing thread stopped")
}

/// Writes all of `bytes` at `offset`; a direct write refused for its alignment is
/// made again the ordinary way (a refused direct write writes nothing).
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    match file.write_all_at(bytes, offset) {
        Err(e) if e.raw_os_error() == Some(EINVAL) => {
            buffered(file)?;
            file.write_all_at(bytes, offset)
        }
        other => other,
    }
}

/// Writes a file's last bytes at `offset`: the whole blocks direct, the rest (which
/// a direct write would refuse) the ordinary way.
fn write_tail(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    let whole = bytes.len() / ALIGN * ALIGN;
    write_at(file, &bytes[..whole], offset)?;
    buffered(file)?;
    file.write_all_at(&bytes[whole..], offset + whole as u64)
}

/// Turns `O_DIRECT` off for `file`, if it is on.
fn buffered(file: &File) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    if flags.contains(OFlags::DIRECT) {
        rustix::fs::fcntl_setfl(file, flags - OFlags::DIRECT)?;
    }
    Ok(())
}

/// A file being written from the start in `BUFFER`-sized direct writes made by a
/// [`Flusher`] (its own, or one shared by the files written one after another);
/// the last bytes, short of a whole buffer, are written once it is finished.
pub struct DirectWriter<F: BorrowMut<Flusher> = Flusher> {
    target: Arc<Target>,
    flusher: F,
    current: Option<Buffer>,
    len: usize,
    offset: u64,
}

impl DirectWriter<Flusher> {
    /// Creates (or truncates) `path`, with a flusher of its own.
    pub fn create(path: &Path) -> io::Result<DirectWriter<Flusher>> {
        DirectWriter::create_with(path, Flusher::start())
    }
}

impl<F: BorrowMut<Flusher>> DirectWriter<F> {
    /// Creates (or truncates) `path`; `flusher` makes its writes.
    pub fn create_with(path: &Path, flusher: F) -> io::Result<DirectWriter<F>> {
        let open = |flags: OFlags| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(flags.bits() as i32)
                .open(path)
        };
        let file = match open(OFlags::DIRECT) {
            Err(e) if e.raw_os_error() == Some(EINVAL) => open(OFlags::empty())?,
            other => other?,
        };
        Ok(DirectWriter {
            target: Arc::new(Target {
                file,
                failed: Mutex::new(None),
            }),
            flusher,
            current: None,
            len: 0,
            offset: 0,
        })
    }

    /// Writes what is left and waits for every write of the file; returns the file
    /// (not yet synced) and the flusher.
    pub fn finish(self) -> io::Result<(File, F)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut flusher = self.finish_then(move |file| {
            let _ = tx.send(file);
        })?;
        flusher.borrow_mut().wait()?;
        let file = rx.recv().map_err(|_| stopped())??;
        Ok((file, flusher))
    }

    /// Writes what is left without waiting: once every write of the file is made,
    /// the flusher's thread hands it (not yet synced), or the first error in
    /// writing it, to `then`. Returns the flusher for the next file.
    pub fn finish_then(
        self,
        then: impl FnOnce(io::Result<File>) + Send + 'static,
    ) -> io::Result<F> {
        let DirectWriter {
            target,
            mut flusher,
            current,
            len,
            offset,
        } = self;
        flusher.borrow_mut().submit(Job::Tail {
            target,
            offset,
            buffer: current,
            len,
            then: Box::new(then),
        })?;
        Ok(flusher)
    }
}

impl<F: BorrowMut<Flusher>> Write for DirectWriter<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.current.is_none() {
            self.current = Some(self.flusher.borrow_mut().buffer()?);
        }
        let n = data.len().min(BUFFER - self.len);
        let buffer = self.current.as_mut().expect("taken above");
        buffer.bytes_mut()[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == BUFFER {
            // A failed write of this file stops the writer at its next buffer, not
            // only at `finish`.
            self.target.check()?;
            let job = Job::Write {
                target: Arc::clone(&self.target),
                offset: self.offset,
                buffer: self.current.take().expect("being filled"),
            };
            self.offset += BUFFER as u64;
            self.len = 0;
            self.flusher.borrow_mut().submit(job)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only whole buffers go out before `finish`: a direct write must be aligned.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn noise(size: usize, seed: &mut u32) -> Vec<u8> {
        (0..size)
            .map(|_| {
                *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (*seed >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn odd_sized_writes_come_out_whole_in_order_through_one_shared_flusher() {
        let dir = tempfile::tempdir().unwrap();
        let mut flusher = Flusher::start();
        let mut seed = 7u32;
        // Sizes around the buffer and the alignment, including empty writes, and
        // files of none, one and several buffers, one after another.
        let files: [&[usize]; 4] = [
            &[
                0,
                1,
                4095,
                4097,
                BUFFER - 3,
                5,
                BUFFER,
                2 * BUFFER + 11,
                333,
            ],
            &[],
            &[BUFFER],
            &[17],
        ];
        for (i, sizes) in files.iter().enumerate() {
            let path = dir.path().join(format!("out{i}"));
            let mut w = DirectWriter::create_with(&path, &mut flusher).unwrap();
            let mut expected = Vec::new();
            for &size in *sizes {
                let chunk = noise(size, &mut seed);
                w.write_all(&chunk).unwrap();
                expected.extend_from_slice(&chunk);
            }
            let (file, _) = w.finish().unwrap();
            file.sync_all().unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), expected.len(), "file {i}");
            assert!(got == expected, "file {i}");
        }
    }

    #[test]
    fn files_finished_without_waiting_arrive_whole_each_with_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut flusher = Flusher::for_many_files();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut seed = 11u32;
        let mut expected = Vec::new();
        // Many files with nothing to write hold no buffer: more jobs in flight than
        // buffers must not stall the flusher. One of them cannot be written at all.
        for i in 0..40 {
            let size = match i % 4 {
                _ if i < 12 => 0,
                0 => 0,
                1 => 100,
                2 => BUFFER + 4096 + 7,
                _ => 2 * BUFFER,
            };
            let path = if i == 17 {
                PathBuf::from("/dev/full")
            } else {
                dir.path().join(format!("out{i}"))
            };
            let mut w = DirectWriter::create_with(&path, &mut flusher).unwrap();
            let bytes = noise(size, &mut seed);
            w.write_all(&bytes).unwrap();
            let tx = tx.clone();
            let name = path.clone();
            w.finish_then(move |file| tx.send((name, file.map(drop))).unwrap())
                .unwrap();
            expected.push((path, bytes));
        }
        flusher.wait().unwrap();
        drop(tx);
        let results: Vec<(PathBuf, io::Result<()>)> = rx.iter().collect();
        assert_eq!(results.len(), expected.len());
        for ((path, result), (want_path, bytes)) in results.iter().zip(&expected) {
            assert_eq!(path, want_path, "handed on in order");
            if path == Path::new("/dev/full") {
                let e = result.as_ref().unwrap_err();
                assert_eq!(
                    e.raw_os_error(),
                    Some(rustix::io::Errno::NOSPC.raw_os_error())
                );
            } else {
                assert!(result.is_ok(), "{}: {result:?}", path.display());
                assert!(&std::fs::read(path).unwrap() == bytes, "{}", path.display());
            }
        }
    }

    #[test]
    fn an_existing_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, vec![1u8; 3 * BUFFER]).unwrap();
        let mut w = DirectWriter::create(&path).unwrap();
        w.write_all(b"short").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }

    #[test]
    fn a_write_error_stops_the_writer_and_is_reported_by_finish() {
        // /dev/full refuses every write with ENOSPC.
        let enospc = Some(rustix::io::Errno::NOSPC.raw_os_error());
        let mut w = DirectWriter::create(Path::new("/dev/full")).unwrap();
        w.write_all(&[0u8; 100]).unwrap();
        assert_eq!(w.finish().err().unwrap().raw_os_error(), enospc);
        // The third buffer waits for the first, whose write failed: the writer stops
        // there instead of writing on.
        let mut w = DirectWriter::create(Path::new("/dev/full")).unwrap();
        let e = w.write_all(&vec![0u8; 3 * BUFFER]).unwrap_err();
        assert_eq!(e.raw_os_error(), enospc);
    }
}
