//! pkt-line output helpers over gix-packetline's encoders, including the
//! side-band multiplexing a push reply travels in.

use std::io::{self, Write};

use gix_packetline::blocking_io::encode;
use gix_packetline::Channel;

/// Largest payload of one side-band-64k packet (65520 - 4 length - 1 band).
pub const MAX_BAND_PAYLOAD: usize = 65515;

/// Writes one data pkt-line.
pub fn data(out: &mut dyn Write, line: &[u8]) -> io::Result<()> {
    encode::data_to_write(line, out).map(|_| ())
}

/// Writes a flush packet (`0000`).
pub fn flush(out: &mut dyn Write) -> io::Result<()> {
    encode::flush_to_write(out).map(|_| ())
}

/// Writes `data` on a side-band channel, split into legal packets.
pub fn band(out: &mut dyn Write, channel: Channel, data: &[u8]) -> io::Result<()> {
    for chunk in data.chunks(MAX_BAND_PAYLOAD) {
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
        assert_eq!(out, b"000eunpack ok\n00000008\x02hi\n");
        let mut big = vec![];
        band(&mut big, Channel::Data, &vec![b'x'; MAX_BAND_PAYLOAD + 1]).unwrap();
        assert_eq!(&big[..4], b"fff0");
        assert_eq!(big.len(), 65520 + 4 + 1 + 1);
    }
}
