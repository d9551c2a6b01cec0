//! What an interactive admin command gets besides its command line: the
//! terminal the client asked for (`ssh -t`), the client's stdin and its
//! window size as it changes. gitd allocates no terminal itself: bytes go
//! both ways untranslated, and `\r\n` handling, echo and line editing are
//! the business of whatever pty the command runs (the platform runs a real
//! one in the guest), exactly as the client expects of a remote pty.
//!
//! ## Stdin, backpressure and its one limit
//!
//! The client's stdin reaches the command through a queue of
//! [`QUEUED_INPUT_PACKETS`] packets. A command that neither reads nor
//! writes holds the client back: gitd stops taking its data and the
//! connection stops reading its socket, so `psql < dump` into a slow
//! database is slowed down, never cut off, and gitd's memory stays
//! bounded. A command that leaves a full queue unread for the idle
//! timeout gets end-of-file and the rest is dropped.
//!
//! The SSH library grants window as data arrives and carries all of a
//! connection's output in the same loop that delivers its input, so
//! holding input back also holds back the command's output (and the
//! client's window adjustments for it). A command that writes before it
//! reads on (echo, `cat`, a terminal echoing a big paste) would deadlock
//! with a client that floods its stdin. So while one of the command's
//! output writes waits, gitd keeps taking input into a buffer, and while
//! that buffer is backlogged (over 512 KiB) it grants the connection a
//! 64 KiB window instead of 2 MiB, which keeps the input in flight
//! small: echoing 48 MiB back buffers at most ~4.5 MiB (measured). Past
//! [`MAX_UNREAD_INPUT`] buffered bytes (a command that writes without
//! pause and never reads, or a client that floods stdin while it does
//! not read the output) the command's input ends: it gets what piled up,
//! then end-of-file; the rest of the client's stdin is dropped and the
//! client is told once on stderr.

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// Largest terminal width or height passed on; a client asking for more
/// gets this (a window of 4 billion columns would make a full-screen
/// program in the VM allocate for each of them).
pub const MAX_DIMENSION: u16 = 10_000;

/// The terminal name given instead of a `TERM` that is no terminfo name.
pub const FALLBACK_TERM: &str = "dumb";

/// Longest `TERM` value accepted (terminfo names are short).
pub const MAX_TERM_LEN: usize = 64;

/// Stdin packets queued between the client and a command that is not
/// reading: at most this many SSH packets (32 KiB each), after which the
/// client is held back (the connection stops reading its socket) instead
/// of the server buffering without bound.
pub const QUEUED_INPUT_PACKETS: usize = 16;

/// Most stdin bytes gitd keeps for a command that is WRITING output but
/// not reading its input while the client keeps sending; past this the
/// command's input ends (it gets these bytes, then end-of-file), the rest
/// of the client's stdin is dropped and the client is told on stderr.
///
/// Why a cap and not backpressure here: the SSH library grants window as
/// data arrives and delivers it from the connection's one loop, which
/// also carries the command's output. Holding input back while an output
/// write waits would stop that output, and a command that writes before
/// it reads on (echo, `cat`, a terminal echoing what is typed) would
/// deadlock with a client that floods its stdin (a big paste,
/// `yes | ssh -tt host run app cat`). So while an output write waits,
/// input is taken in anyway, up to this many bytes. While no output write
/// waits, a command that does not read holds the client back as before
/// (`psql < dump` is slowed down, never cut off).
///
/// Memory per channel stays bounded: at most this plus one SSH packet,
/// plus [`QUEUED_INPUT_PACKETS`] packets in the command's queue, plus the
/// SSH library's own per-channel queue (100 messages of at most 32 KiB):
/// about 8 + 0.5 + 3.2 MiB.
pub const MAX_UNREAD_INPUT: usize = 8 << 20;

/// A terminal's size in character cells; 0 means unknown (OpenSSH sends
/// 0×0 when its own stdin is not a terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl WindowSize {
    /// From the 32-bit values of an SSH `pty-req` or `window-change`,
    /// each clamped to [`MAX_DIMENSION`].
    pub fn clamped(cols: u32, rows: u32) -> WindowSize {
        let clamp = |v: u32| v.min(u32::from(MAX_DIMENSION)) as u16;
        WindowSize {
            cols: clamp(cols),
            rows: clamp(rows),
        }
    }
}

/// The terminal a client asked for with `pty-req`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tty {
    /// The client's `TERM` (e.g. `xterm-256color`); may be empty.
    pub term: String,
    /// Its size when the command started; later changes come on
    /// [`Interactive::window`].
    pub size: WindowSize,
}

/// Why a `pty-req` was refused (the command then runs without a terminal,
/// and OpenSSH says "PTY allocation request failed").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtyError {
    /// `TERM` is longer than [`MAX_TERM_LEN`] or holds bytes no terminfo
    /// name has.
    #[error("TERM must be at most {MAX_TERM_LEN} characters of A-Z a-z 0-9 . _ + -")]
    BadTerm,
}

impl Tty {
    /// Checks a `pty-req`: the terminal name must look like a terminfo
    /// name (it ends up in the environment of a process in the VM); the
    /// size is clamped, never refused.
    pub fn from_request(term: &str, cols: u32, rows: u32) -> Result<Tty, TtyError> {
        let name_ok = term.len() <= MAX_TERM_LEN
            && term
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if !name_ok {
            return Err(TtyError::BadTerm);
        }
        Ok(Tty {
            term: term.to_string(),
            size: WindowSize::clamped(cols, rows),
        })
    }
}

/// An admin command's live connection to its client.
#[derive(Debug)]
pub struct Interactive {
    /// The terminal the client asked for, if it did (`ssh -t`).
    pub tty: Option<Tty>,
    /// The client's stdin as it arrives, in packets. `None` from `recv`
    /// is the client's EOF (`ssh -n`, the end of a piped file); data the
    /// client sends after its EOF is dropped. Bounded by
    /// [`QUEUED_INPUT_PACKETS`]: a command that neither reads nor writes
    /// holds the client back (and, until the queue has room, keeps gitd
    /// from seeing the client leave); after the idle timeout with a full
    /// queue the input ends as at EOF and the rest is discarded. While
    /// one of the command's output writes waits, input is taken in anyway
    /// (up to [`MAX_UNREAD_INPUT`], then the input ends and the client is
    /// told), so echoing what it reads never deadlocks. Drop it when you
    /// will not read it: the rest is then discarded as it arrives.
    pub input: mpsc::Receiver<Bytes>,
    /// The window size, updated on each `window-change` (starts at the
    /// `tty`'s size, or 0×0 without one).
    pub window: watch::Receiver<WindowSize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_window_sizes_are_clamped() {
        assert_eq!(
            WindowSize::clamped(u32::MAX, 70_000),
            WindowSize {
                cols: MAX_DIMENSION,
                rows: MAX_DIMENSION
            }
        );
        assert_eq!(
            WindowSize::clamped(80, 24),
            WindowSize { cols: 80, rows: 24 }
        );
        assert_eq!(WindowSize::clamped(0, 0), WindowSize::default());
    }

    #[test]
    fn terminal_names_are_checked() {
        let t = Tty::from_request("xterm-256color", 132, 43).unwrap();
        assert_eq!(t.term, "xterm-256color");
        assert_eq!(
            t.size,
            WindowSize {
                cols: 132,
                rows: 43
            }
        );
        assert!(Tty::from_request("", 0, 0).is_ok());
        for bad in ["xterm\n", "a b", "x;rm -rf /", "é", &"x".repeat(65)] {
            assert_eq!(
                Tty::from_request(bad, 80, 24),
                Err(TtyError::BadTerm),
                "{bad:?}"
            );
        }
        assert!(Tty::from_request(&"x".repeat(64), 80, 24).is_ok());
    }
}
