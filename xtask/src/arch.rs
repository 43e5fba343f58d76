//! The two Windows architectures the driver is built for.

use std::fmt;

/// A target architecture of `nbshm.sys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// AMD64.
    X64,
    /// ARM64.
    Arm64,
}

impl Arch {
    /// Both, in build order.
    #[cfg(test)]
    pub const ALL: [Self; 2] = [Self::X64, Self::Arm64];

    /// Parses `x64` / `arm64` (also `amd64`, `x86_64`, `aarch64`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "x64" | "amd64" | "x86_64" => Ok(Self::X64),
            "arm64" | "aarch64" => Ok(Self::Arm64),
            _ => Err(format!("unknown architecture {text:?} (expected x64 or arm64)")),
        }
    }

    /// The name used on the command line and in folder names.
    pub const fn name(self) -> &'static str {
        match self {
            Self::X64 => "x64",
            Self::Arm64 => "arm64",
        }
    }

    /// The Rust target triple.
    pub const fn triple(self) -> &'static str {
        match self {
            Self::X64 => "x86_64-pc-windows-msvc",
            Self::Arm64 => "aarch64-pc-windows-msvc",
        }
    }

    /// `llvm-dlltool -m` value.
    pub const fn dlltool_machine(self) -> &'static str {
        match self {
            Self::X64 => "i386:x86-64",
            Self::Arm64 => "arm64",
        }
    }

    /// What stampinf's `-a` puts in place of `$ARCH$`.
    pub const fn inf_arch(self) -> &'static str {
        match self {
            Self::X64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// `IMAGE_FILE_MACHINE_*` of the image.
    pub const fn pe_machine(self) -> u16 {
        match self {
            Self::X64 => 0x8664,
            Self::Arm64 => 0xAA64,
        }
    }

    /// The architecture of an `IMAGE_FILE_MACHINE_*` value, if it is one of ours.
    pub const fn from_pe_machine(machine: u16) -> Option<Self> {
        match machine {
            0x8664 => Some(Self::X64),
            0xAA64 => Some(Self::Arm64),
            _ => None,
        }
    }

    /// The PE name of the machine.
    pub const fn pe_machine_name(self) -> &'static str {
        match self {
            Self::X64 => "AMD64",
            Self::Arm64 => "ARM64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn parses_names_and_round_trips_the_machine() {
        assert_eq!(Arch::parse("x64"), Ok(Arch::X64));
        assert_eq!(Arch::parse("AArch64"), Ok(Arch::Arm64));
        assert!(Arch::parse("x86").is_err());
        for arch in Arch::ALL {
            assert_eq!(Arch::parse(arch.name()), Ok(arch));
            assert_eq!(Arch::from_pe_machine(arch.pe_machine()), Some(arch));
        }
        assert_eq!(Arch::from_pe_machine(0x14c), None);
    }
}
