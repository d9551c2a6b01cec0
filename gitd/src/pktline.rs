//! pkt-line framing over gix-packetline's codec: a reader that tells a
//! clean hang-up from a truncated or malformed packet (so every error can
//! say what was wrong), and writers for data lines, flush/delim packets,
//! `ERR` lines and side-band multiplexing.

use std::io::{self, BufRead, Write};

use gix_packetline::blocking_io::encode;
use gix_packetline::Channel;

/// Largest payload of one side-band-64k packet (65520 - 4 length - 1 band).
pub const MAX_BAND_PAYLOAD: usize = 65515;

/// Largest payload of one plain `side-band` packet (1000 - 4 - 1).
pub const MAX_SMALL_BAND_PAYLOAD: usize = 995;

/// Largest data payload of any pkt-line (65520 - 4).
const MAX_DATA: usize = 65516;

/// One packet read from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkt<'a> {
    /// A data line, its trailing `\n` kept.
    Data(&'a [u8]),
    /// `0000`: end of a message.
    Flush,
    /// `0001`: section separator (protocol v2).
    Delim,
    /// `0002`: end of a response (protocol v2, stateless transports).
    ResponseEnd,
}

impl<'a> Pkt<'a> {
    /// The data line without its trailing `\n`, if this is one.
    pub fn text(&self) -> Option<&'a [u8]> {
        match self {
            Pkt::Data(d) => Some(d.strip_suffix(b"\n").unwrap_or(d)),
            _ => None,
        }
    }
}

/// What went wrong reading a packet.
#[derive(Debug, thiserror::Error)]
pub enum PktError {
    /// The connection failed (including the idle timeout).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes are not a pkt-line.
    #[error("malformed pkt-line: {0}")]
    Malformed(String),
    /// The client hung up inside a packet.
    #[error("the client hung up in the middle of a pkt-line")]
    Truncated,
}

/// Reads pkt-lines one at a time without reading past the current packet,
/// so a pack that follows the commands can be read from the same stream.
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            buf: Vec::with_capacity(1024),
        }
    }

    /// The underlying stream (positioned after the last packet read).
    pub fn inner(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next packet; `None` when the client closed the stream cleanly
    /// between packets.
    pub fn read(&mut self) -> Result<Option<Pkt<'_>>, PktError> {
        let mut hex = [0u8; 4];
        match read_full(&mut self.inner, &mut hex)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(PktError::Truncated),
        }
        let len = match gix_packetline::decode::hex_prefix(&hex) {
            Ok(gix_packetline::decode::PacketLineOrWantedSize::Line(line)) => {
                return Ok(Some(match line {
                    gix_packetline::PacketLineRef::Flush => Pkt::Flush,
                    gix_packetline::PacketLineRef::Delimiter => Pkt::Delim,
                    gix_packetline::PacketLineRef::ResponseEnd => Pkt::ResponseEnd,
                    gix_packetline::PacketLineRef::Data(_) => {
                        return Err(PktError::Malformed("unexpected empty data line".into()))
                    }
                }))
            }
            Ok(gix_packetline::decode::PacketLineOrWantedSize::Wanted(n)) => n as usize,
            Err(e) => {
                return Err(PktError::Malformed(format!(
                    "bad length `{}`: {e}",
                    String::from_utf8_lossy(&hex).escape_default()
                )))
            }
        };
        if len > MAX_DATA {
            return Err(PktError::Malformed(format!(
                "length {} exceeds the maximum of {}",
                len + 4,
                MAX_DATA + 4
            )));
        }
        self.buf.resize(len, 0);
        if read_full(&mut self.inner, &mut self.buf)? != len {
            return Err(PktError::Truncated);
        }
        Ok(Some(Pkt::Data(&self.buf)))
    }
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes one data pkt-line.
pub fn data(out: &mut dyn Write, line: &[u8]) -> io::Result<()> {
    encode::data_to_write(line, out).map(|_| ())
}

/// Writes a flush packet (`0000`).
pub fn flush(out: &mut dyn Write) -> io::Result<()> {
    encode::flush_to_write(out).map(|_| ())
}

/// Writes a delimiter packet (`0001`).
pub fn delim(out: &mut dyn Write) -> io::Result<()> {
    encode::delim_to_write(out).map(|_| ())
}

/// Writes an `ERR <message>` line, which git clients show as
/// `fatal: remote error: <message>`.
pub fn error(out: &mut dyn Write, message: &str) -> io::Result<()> {
    let mut text: String = message.chars().take(60_000).collect();
    text.push('\n');
    encode::error_to_write(text.as_bytes(), out).map(|_| ())
}

/// Writes `data` on a side-band-64k channel, split into legal packets.
pub fn band(out: &mut dyn Write, channel: Channel, data: &[u8]) -> io::Result<()> {
    for chunk in data.chunks(MAX_BAND_PAYLOAD) {
        encode::band_to_write(channel, chunk, &mut *out)?;
    }
    Ok(())
}

/// Writes `data` on a side-band channel with payloads of at most `max`.
pub fn band_sized(
    out: &mut dyn Write,
    channel: Channel,
    data: &[u8],
    max: usize,
) -> io::Result<()> {
    for chunk in data.chunks(max.clamp(1, MAX_BAND_PAYLOAD)) {
        encode::band_to_write(channel, chunk, &mut *out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lines_flush_and_bands() {
        let mut out = vec![];
        data(&mut out, b"unpack ok\n").unwrap();
        flush(&mut out).unwrap();
        band(&mut out, Channel::Progress, b"hi\n").unwrap();
        delim(&mut out).unwrap();
        error(&mut out, "no").unwrap();
        assert_eq!(out, b"000eunpack ok\n00000008\x02hi\n0001000bERR no\n");
        let mut big = vec![];
        band(&mut big, Channel::Data, &vec![b'x'; MAX_BAND_PAYLOAD + 1]).unwrap();
        assert_eq!(&big[..4], b"fff0");
        assert_eq!(big.len(), 65520 + 4 + 1 + 1);
        let mut small = vec![];
        band_sized(
            &mut small,
            Channel::Data,
            &[b'y'; 1000],
            MAX_SMALL_BAND_PAYLOAD,
        )
        .unwrap();
        assert_eq!(&small[..4], b"03e8");
    }

    #[test]
    fn reads_packets_and_names_every_malformation() {
        let input: &[u8] = b"0009want\n000100000002";
        let mut r = Reader::new(input);
        assert_eq!(r.read().unwrap(), Some(Pkt::Data(b"want\n")));
        assert_eq!(r.read().unwrap(), Some(Pkt::Delim));
        assert_eq!(r.read().unwrap(), Some(Pkt::Flush));
        assert_eq!(r.read().unwrap(), Some(Pkt::ResponseEnd));
        assert_eq!(r.read().unwrap(), None, "clean EOF between packets");

        let cases: &[(&[u8], &str)] = &[
            (b"zzzzhello", "bad length `zzzz`"),
            (b"0004", "bad length `0004`: Received an invalid empty line"),
            (b"0003", "bad length `0003`"),
            (b"00", "hung up"),
            (b"0010short", "hung up"),
        ];
        for (bytes, want) in cases {
            let e = Reader::new(*bytes).read().unwrap_err().to_string();
            assert!(e.contains(want), "{bytes:?}: {e}");
        }
        // The largest legal line reads; one byte more is refused.
        let mut ok = b"fff0".to_vec();
        ok.extend(vec![b'a'; 65516]);
        assert!(matches!(Reader::new(&ok[..]).read(), Ok(Some(Pkt::Data(d))) if d.len() == 65516));
        let e = Reader::new(&b"fff1"[..]).read().unwrap_err().to_string();
        assert!(e.contains("exceeds the maximum"), "{e}");
    }
}
