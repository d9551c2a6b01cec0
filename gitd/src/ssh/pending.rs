//! Stdin taken from a channel but not yet by its command, and the rule
//! for when to take more (see [`super::input`] for why).

use std::collections::VecDeque;

use bytes::Bytes;

/// Stdin taken from the channel but not yet taken by the command, and
/// the rule for when to take more.
#[derive(Debug)]
pub(crate) struct PendingInput {
    packets: VecDeque<Bytes>,
    bytes: usize,
    cap: usize,
}

/// [`PendingInput::push`] went past the cap: the input must end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverCap {
    /// Bytes pending, the packet that went over included.
    pub(crate) pending: usize,
}

impl PendingInput {
    pub(crate) fn new(cap: usize) -> PendingInput {
        PendingInput {
            packets: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    /// Whether to take another message from the channel now: always
    /// when nothing is pending; otherwise only while an output write is
    /// waiting (the session loop is then needed to move it). Otherwise
    /// the client is held back.
    pub(crate) fn may_read(&self, output_waiting: bool) -> bool {
        self.packets.is_empty() || output_waiting
    }

    /// Keeps `data` for the command; past the cap, says so (the data is
    /// kept: the command gets everything up to the cut).
    pub(crate) fn push(&mut self, data: Bytes) -> Result<(), OverCap> {
        self.bytes += data.len();
        self.packets.push_back(data);
        if self.bytes > self.cap {
            return Err(OverCap {
                pending: self.bytes,
            });
        }
        Ok(())
    }

    /// The oldest pending packet.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let data = self.packets.pop_front()?;
        self.bytes -= data.len();
        Some(data)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn input_is_held_back_while_no_output_waits() {
        let mut p = PendingInput::new(100);
        assert!(p.may_read(false), "nothing pending: read");
        p.push(packet(10)).unwrap();
        assert!(
            !p.may_read(false),
            "pending and no output waiting: hold back"
        );
        assert!(p.may_read(true), "output waiting: keep the loop moving");
        assert_eq!(p.pop().unwrap().len(), 10);
        assert!(p.may_read(false));
        assert_eq!(p.bytes(), 0);
    }

    #[test]
    fn past_the_cap_the_input_must_end_and_nothing_is_lost_before() {
        let mut p = PendingInput::new(100);
        for _ in 0..10 {
            p.push(packet(10)).unwrap();
        }
        assert_eq!(p.bytes(), 100, "exactly the cap is still fine");
        assert_eq!(p.push(packet(1)), Err(OverCap { pending: 101 }));
        let mut n = 0;
        while let Some(d) = p.pop() {
            n += d.len();
        }
        assert_eq!(n, 101, "what piled up is still delivered");
        assert!(p.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut p = PendingInput::new(100);
        p.push(packet(60)).unwrap();
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.bytes(), 0);
        assert!(p.may_read(false));
    }
}
