//! Relay flags assigned by the authorities' vote and used by path
//! selection.

/// One relay flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Flag {
    /// Reachable when last tested.
    Running = 0,
    /// A well-formed, acceptable descriptor.
    Valid = 1,
    /// Suitable as a first hop (stable, fast, long-lived).
    Guard = 2,
    /// Its exit policy lets general traffic out.
    Exit = 3,
    /// Long uptime.
    Stable = 4,
    /// Enough bandwidth.
    Fast = 5,
}

impl Flag {
    /// Every flag, in bit order.
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Valid,
        Self::Guard,
        Self::Exit,
        Self::Stable,
        Self::Fast,
    ];

    /// Lower-case name, as in `trine-dir show`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Valid => "valid",
            Self::Guard => "guard",
            Self::Exit => "exit",
            Self::Stable => "stable",
            Self::Fast => "fast",
        }
    }
}

/// A set of [`Flag`]s, one bit each (bit = the flag's discriminant). The
/// canonical encoding is this byte; bits above [`Flag::Fast`] are invalid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const NONE: Self = Self(0);

    /// The set from its byte; `None` if an unknown bit is set.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits >> Flag::ALL.len() == 0).then_some(Self(bits))
    }

    /// The byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether `flag` is in the set.
    pub fn has(self, flag: Flag) -> bool {
        self.0 & (1 << flag as u8) != 0
    }

    /// The set with `flag` added.
    #[must_use]
    pub fn with(self, flag: Flag) -> Self {
        Self(self.0 | 1 << flag as u8)
    }

    /// The flags in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |flag| self.has(*flag))
    }
}

impl FromIterator<Flag> for Flags {
    fn from_iter<I: IntoIterator<Item = Flag>>(flags: I) -> Self {
        flags.into_iter().fold(Self::NONE, Self::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_their_byte_and_refuse_unknown_bits() {
        let set: Flags = [Flag::Guard, Flag::Fast, Flag::Running]
            .into_iter()
            .collect();
        assert!(set.has(Flag::Guard) && !set.has(Flag::Exit));
        assert_eq!(Flags::from_bits(set.bits()), Some(set));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Flag::Running, Flag::Guard, Flag::Fast]
        );
        assert_eq!(Flags::from_bits(1 << 6), None);
        assert_eq!(Flags::from_bits(0x80), None);
    }
}
