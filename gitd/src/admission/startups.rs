//! `MaxStartups` as sshd_config writes it: `start:rate:full`.

use std::fmt;
use std::str::FromStr;

/// `MaxStartups`: handshakes in progress at which random early drop
/// starts (`start`), its initial probability (`rate_percent`), and the
/// most handshakes in progress at once (`full`). Written `start:rate:full`
/// (`10:30:100`) or `full` alone (no random drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    /// Random early drop begins with this many handshakes in progress.
    pub start: usize,
    /// Drop probability at `start`, in percent; it rises linearly to 100
    /// at `full`.
    pub rate_percent: u8,
    /// Most handshakes in progress at once.
    pub full: usize,
}

impl Default for Startups {
    /// `10:30:100`, OpenSSH's default.
    fn default() -> Self {
        Startups {
            start: 10,
            rate_percent: 30,
            full: 100,
        }
    }
}

impl fmt::Display for Startups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate_percent, self.full)
    }
}

/// A `start:rate:full` value that does not parse or does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid startups `{value}`: {why} (write start:rate:full, e.g. 10:30:100, or just full)")]
pub struct StartupsError {
    /// What was given.
    pub value: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for Startups {
    type Err = StartupsError;

    fn from_str(value: &str) -> Result<Startups, StartupsError> {
        let err = |why| StartupsError {
            value: value.to_string(),
            why,
        };
        let numbers: Vec<&str> = value.trim().split(':').collect();
        let num = |s: &str| s.trim().parse::<usize>().map_err(|_| err("not a number"));
        let s = match numbers.as_slice() {
            [full] => {
                let full = num(full)?;
                Startups {
                    start: full,
                    rate_percent: 100,
                    full,
                }
            }
            [start, rate, full] => Startups {
                start: num(start)?,
                rate_percent: u8::try_from(num(rate)?).map_err(|_| err("rate is over 100"))?,
                full: num(full)?,
            },
            _ => return Err(err("expected one or three numbers")),
        };
        s.check().map_err(err)?;
        Ok(s)
    }
}

impl Startups {
    /// Why these numbers cannot work, if they cannot.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.full == 0 {
            Err("full must be at least 1")
        } else if self.start > self.full {
            Err("start is above full")
        } else if self.rate_percent > 100 {
            Err("rate is over 100")
        } else {
            Ok(())
        }
    }

    /// Drop probability in percent with `pending` handshakes in progress.
    pub(super) fn drop_percent(&self, pending: usize) -> u32 {
        if pending >= self.full {
            100
        } else if pending < self.start {
            0
        } else {
            let rate = u32::from(self.rate_percent);
            let span = (self.full - self.start) as u32;
            rate + (100 - rate) * (pending - self.start) as u32 / span.max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startups_parse_like_sshd_config() {
        assert_eq!(
            "10:30:100".parse::<Startups>().unwrap(),
            Startups::default()
        );
        let full: Startups = "50".parse().unwrap();
        assert_eq!((full.start, full.full), (50, 50));
        for bad in ["", "a:b:c", "10:30", "200:30:100", "1:101:10", "0"] {
            let e = bad.parse::<Startups>().unwrap_err();
            assert!(e.to_string().contains("e.g. 10:30:100"), "{bad}: {e}");
        }
        assert_eq!(Startups::default().to_string(), "10:30:100");
    }

    #[test]
    fn the_drop_probability_rises_from_rate_to_certain() {
        assert_eq!(Startups::default().drop_percent(55), 65);
        assert_eq!(Startups::default().drop_percent(9), 0);
        assert_eq!(Startups::default().drop_percent(10), 30);
        assert_eq!(Startups::default().drop_percent(100), 100);
    }
}
