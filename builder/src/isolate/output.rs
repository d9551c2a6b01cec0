//! A step's merged stdout/stderr: streamed line by line to the log sink,
//! prefixed with the step, with the last lines kept for error messages.

use crate::log::LogSink;
use std::collections::VecDeque;
use std::io::Read;

/// Lines of output kept for error messages.
pub(super) const TAIL_LINES: usize = 50;
/// Longest line passed to the sink; longer lines are split.
const MAX_LINE: usize = 4096;

/// Read the merged output, send each line to the sink, keep the last lines.
pub(super) fn stream_lines(
    mut r: std::io::PipeReader,
    number: usize,
    log: &dyn LogSink,
) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let emit = |bytes: &[u8], tail: &mut VecDeque<String>| {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_string();
        log.line(&format!("[step {number}] {line}"));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&line[..line.len() - 1], &mut tail);
        }
        while pending.len() > MAX_LINE {
            let part: Vec<u8> = pending.drain(..MAX_LINE).collect();
            emit(&part, &mut tail);
        }
    }
    if !pending.is_empty() {
        emit(&pending, &mut tail);
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_are_prefixed_split_and_the_tail_is_bounded() {
        let (r, mut w) = std::io::pipe().unwrap();
        let sink = crate::log::MemorySink::default();
        let writer = std::thread::spawn(move || {
            for i in 0..60 {
                writeln!(w, "line {i}\r").unwrap();
            }
            w.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        });
        let tail = stream_lines(r, 7, &sink);
        writer.join().unwrap();
        let lines = sink.lines();
        assert_eq!(lines[0], "[step 7] line 0");
        assert_eq!(lines.len(), 62, "the long last line is split in two");
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.back().unwrap().len(), 10);
    }
}
