//! Two-stage pipelines over `Read` and `Write`: one thread produces or consumes the
//! bytes while the caller works on the previous chunk. Unpacking decompresses on one
//! thread, hashes on another and copies and writes on a third; packing hashes and
//! writes the compressed output while the caller reads and checks the next blob.
//! Memory stays bounded by `DEPTH` chunks.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::digest::{Digest, Hasher};

/// Chunk size of the pipes.
pub const CHUNK: usize = 1 << 20;
/// Chunks in flight at most.
pub const DEPTH: usize = 4;

/// A reader whose bytes are read ahead by a thread.
pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Chunks read out go back to the thread, which would otherwise zero new ones.
    free: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    _thread: JoinHandle<()>,
}

/// Reads `inner` on a thread of its own, up to `DEPTH` chunks ahead of the caller.
pub fn read_ahead<R: Read + Send + 'static>(mut inner: R) -> ReadAhead {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (free, freed) = sync_channel::<Vec<u8>>(DEPTH);
    let thread = std::thread::spawn(move || loop {
        let mut chunk = freed.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        // Fill whole chunks: a decoder hands out small pieces.
        let result = loop {
            match inner.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        let end = filled == 0;
        let message = match result {
            Err(e) if filled == 0 => Err(e),
            Err(e) => {
                // Hand over what arrived, then the error.
                if tx.send(Ok(chunk)).is_err() {
                    return;
                }
                let _ = tx.send(Err(e));
                return;
            }
            Ok(()) => Ok(chunk),
        };
        let failed = message.is_err();
        if tx.send(message).is_err() || end || failed {
            return;
        }
    });
    ReadAhead {
        rx,
        free,
        current: Vec::new(),
        pos: 0,
        done: false,
        _thread: thread,
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.free.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the reading thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A writer whose bytes are written by a thread, `DEPTH` chunks behind the caller.
pub struct WriteBehind<W> {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

/// Writes into `inner` on a thread of its own; `finish` hands `inner` back.
pub fn write_behind<W: Write + Send + 'static>(mut inner: W) -> WriteBehind<W> {
    let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
    let thread = std::thread::spawn(move || {
        for chunk in rx {
            inner.write_all(&chunk)?;
        }
        inner.flush()?;
        Ok(inner)
    });
    WriteBehind {
        tx: Some(tx),
        buf: Vec::with_capacity(CHUNK),
        thread: Some(thread),
    }
}

impl<W> WriteBehind<W> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(chunk).is_ok());
        if sent {
            Ok(())
        } else {
            // The writing thread stopped: its error says why.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the writing thread stopped")))
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the writing thread panicked"))?,
            None => Err(io::Error::other("the writing thread already ended")),
        }
    }

    /// Writes what is buffered, waits for the thread, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send()?;
        self.join()
    }
}

impl<W> Drop for WriteBehind<W> {
    /// Dropped unfinished (a failed or interrupted write): waits for the thread,
    /// so that the writer's own cleanup (a temp file removed) is done before the
    /// caller goes on, or the process exits.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

impl<W> Write for WriteBehind<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing happens in `finish`; the thread owns the writer.
        Ok(())
    }
}

/// Chunk size of [`HashBehind`]: small, since `finish` waits for what is queued.
const HASH_CHUNK: usize = 256 << 10;

enum Hashing {
    Bytes(Vec<u8>),
    Finish,
}

/// A SHA-256 computed on a thread of its own, a few chunks behind the caller: the
/// caller only copies the bytes (several times faster than hashing them) and waits
/// at [`HashBehind::finish`] for the chunks still queued. One serves many entries in
/// turn.
pub struct HashBehind {
    tx: SyncSender<Hashing>,
    digests: Receiver<Digest>,
    /// Hashed chunks come back to be filled again.
    free: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    len: u64,
    _thread: JoinHandle<()>,
}

/// Starts the hashing thread; it ends when the [`HashBehind`] is dropped.
pub fn hash_behind() -> HashBehind {
    let (tx, rx) = sync_channel::<Hashing>(DEPTH);
    // Unbounded: with `end`, digests wait here until the caller asks for them.
    let (digest_tx, digests) = std::sync::mpsc::channel::<Digest>();
    let (free_tx, free) = sync_channel::<Vec<u8>>(DEPTH + 1);
    let thread = std::thread::spawn(move || {
        let mut hasher = Hasher::new();
        for message in rx {
            match message {
                Hashing::Bytes(chunk) => {
                    hasher.update(&chunk);
                    let _ = free_tx.try_send(chunk);
                }
                Hashing::Finish => {
                    if digest_tx
                        .send(std::mem::take(&mut hasher).finish())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    HashBehind {
        tx,
        digests,
        free,
        buf: Vec::with_capacity(HASH_CHUNK),
        len: 0,
        _thread: thread,
    }
}

impl HashBehind {
    /// Adds `bytes` to the current hash.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = bytes.len().min(HASH_CHUNK - self.buf.len());
            self.buf.extend_from_slice(&bytes[..n]);
            self.len += n as u64;
            bytes = &bytes[n..];
            if self.buf.len() == HASH_CHUNK {
                self.send();
            }
        }
    }

    /// Bytes added since the last `finish`.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn send(&mut self) {
        let next = match self.free.try_recv() {
            Ok(mut used) => {
                used.clear();
                used
            }
            Err(_) => Vec::with_capacity(HASH_CHUNK),
        };
        let chunk = std::mem::replace(&mut self.buf, next);
        // A send fails only if the thread is gone, which `finish` reports.
        let _ = self.tx.send(Hashing::Bytes(chunk));
    }

    /// The digest of everything added since the last `finish`, once the thread has
    /// hashed it; the next bytes start a new hash.
    pub fn finish(&mut self) -> io::Result<Digest> {
        self.end()?;
        self.digests.recv().map_err(|_| stopped())
    }

    /// Ends the current hash without waiting for it: its digest comes, in order,
    /// from [`HashBehind::ended`]. The next bytes start a new hash.
    pub fn end(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send();
        }
        self.len = 0;
        self.tx.send(Hashing::Finish).map_err(|_| stopped())
    }

    /// The digest of the oldest hash ended and not yet asked for: waiting for it if
    /// `wait`, else only if it is ready (`None` when it is not).
    pub fn ended(&mut self, wait: bool) -> io::Result<Option<Digest>> {
        if wait {
            return self.digests.recv().map(Some).map_err(|_| stopped());
        }
        match self.digests.try_recv() {
            Ok(d) => Ok(Some(d)),
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(stopped()),
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_through_unchanged() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut out = Vec::new();
        read_ahead(std::io::Cursor::new(data.clone()))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut w = write_behind(Vec::new());
        for piece in data.chunks(77_777) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.finish().unwrap(), data);
    }

    #[test]
    fn hashes_ended_without_waiting_come_back_in_order() {
        let big: Vec<u8> = (0..(3 * HASH_CHUNK)).map(|i| (i % 253) as u8).collect();
        let mut h = hash_behind();
        let runs: [&[u8]; 4] = [&big, b"", b"x", &big[1..]];
        for run in runs {
            h.update(run);
            h.end().unwrap();
        }
        let mut got = Vec::new();
        while got.len() < runs.len() {
            if let Some(d) = h.ended(got.len() == runs.len() - 1).unwrap() {
                got.push(d);
            }
        }
        let want: Vec<Digest> = runs.iter().map(|r| Digest::of(r)).collect();
        assert_eq!(got, want);
        assert_eq!(h.ended(false).unwrap(), None);
        // `finish` still works after them.
        h.update(b"abc");
        assert_eq!(h.finish().unwrap(), Digest::of(b"abc"));
    }

    #[test]
    fn hashing_behind_gives_each_run_of_bytes_its_own_digest() {
        let data: Vec<u8> = (0..(2 * HASH_CHUNK + 999))
            .map(|i| (i * 13 % 241) as u8)
            .collect();
        let mut h = hash_behind();
        // The same bytes in pieces that straddle chunks, then a short and an empty run.
        for piece in data.chunks(100_003) {
            h.update(piece);
        }
        assert_eq!(h.len(), data.len() as u64);
        assert_eq!(h.finish().unwrap(), Digest::of(&data));
        h.update(b"abc");
        assert_eq!(h.finish().unwrap(), Digest::of(b"abc"));
        assert!(h.is_empty());
        assert_eq!(h.finish().unwrap(), Digest::of(b""));
        // Chunks handed back are filled again from empty.
        h.update(&data);
        h.update(&data);
        assert_eq!(
            h.finish().unwrap(),
            Digest::of(&[&data[..], &data[..]].concat())
        );
    }

    #[test]
    fn errors_come_through() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("boom"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let e = read_ahead(Failing(10)).read_to_end(&mut out).unwrap_err();
        assert_eq!(e.to_string(), "boom");
        assert_eq!(out.len(), 10);

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = write_behind(Full);
        let big = vec![0u8; 3 * CHUNK];
        let e = w.write_all(&big).and_then(|_| w.finish().map(|_| ()));
        assert_eq!(e.unwrap_err().to_string(), "disk full");
    }
}
