//! Stamping the INF template, as the WDK's stampinf does in the Windows build (`-d * -a <arch>
//! -v <version>`): `DriverVer = MM/DD/YYYY,a.b.c.d` in `[Version]`, and `$ARCH$` replaced by
//! `amd64` or `arm64` everywhere. Nothing else of the template changes.

use std::fmt::Write as _;

use crate::arch::Arch;
use crate::date::Date;

/// The four-part driver version of a crate version: `0.1.0` → `0.1.0.0`. Pre-release and build
/// metadata are dropped; each part must fit the 16 bits Windows gives it.
pub fn driver_version(crate_version: &str) -> Result<String, String> {
    let core = crate_version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("crate version {crate_version:?} is not MAJOR.MINOR.PATCH"));
    }
    let mut numbers = Vec::with_capacity(4);
    for part in parts {
        let number: u16 = part
            .parse()
            .map_err(|_| format!("crate version {crate_version:?}: {part:?} is not 0..=65535"))?;
        numbers.push(number.to_string());
    }
    numbers.push("0".to_owned());
    Ok(numbers.join("."))
}

/// The stamped INF text.
pub fn stamp(template: &str, date: Date, driver_version: &str, arch: Arch) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut section = String::new();
    let mut stamped = false;
    for line in template.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = line.get(body.len()..).unwrap_or_default();
        let trimmed = body.trim_start();
        if let Some(rest) = trimmed.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default().trim().clone_into(&mut section);
        }
        let key = body.split(['=', ';']).next().unwrap_or_default().trim();
        if section.eq_ignore_ascii_case("Version")
            && key.eq_ignore_ascii_case("DriverVer")
            && body.contains('=')
        {
            if stamped {
                return Err("[Version] has more than one DriverVer line".to_owned());
            }
            let (before, after) = body.split_once('=').unwrap_or((body, ""));
            let comment = after.find(';').and_then(|at| after.get(at..)).unwrap_or_default();
            let separator = if comment.is_empty() { "" } else { " " };
            let _ = write!(out, "{before}= {},{driver_version}{separator}{comment}{ending}", date.inf_form());
            stamped = true;
        } else {
            out.push_str(&line.replace("$ARCH$", arch.inf_arch()));
        }
    }
    if stamped {
        Ok(out)
    } else {
        Err("the INF template has no `DriverVer =` line in [Version] to stamp".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::{driver_version, stamp};
    use crate::arch::Arch;
    use crate::date::Date;

    const DATE: Date = Date { year: 2026, month: 11, day: 21 };

    #[test]
    fn versions() {
        assert_eq!(driver_version("0.1.0").unwrap(), "0.1.0.0");
        assert_eq!(driver_version("12.345.6-beta.1+abc").unwrap(), "12.345.6.0");
        assert!(driver_version("1.2").is_err());
        assert!(driver_version("1.70000.0").is_err());
    }

    #[test]
    fn stamps_driver_ver_and_arch_only() {
        let template = "[Version]\r\nSignature = \"$WINDOWS NT$\"\r\nDriverVer   =\r\n\r\n[Manufacturer]\r\n\
                        %M% = Models, NT$ARCH$.10.0...25319, NT$ARCH$\r\n[Models.NT$ARCH$]\r\nDriverVer = keep\r\n";
        let out = stamp(template, DATE, "0.1.0.0", Arch::Arm64).unwrap();
        assert_eq!(
            out,
            "[Version]\r\nSignature = \"$WINDOWS NT$\"\r\nDriverVer   = 11/21/2026,0.1.0.0\r\n\r\n[Manufacturer]\r\n\
             %M% = Models, NTarm64.10.0...25319, NTarm64\r\n[Models.NTarm64]\r\nDriverVer = keep\r\n"
        );
    }

    #[test]
    fn keeps_a_comment_and_replaces_an_old_value() {
        let out = stamp(
            "[version]\ndriverver = 01/01/2000,1.0.0.0 ; set by the build\n",
            DATE,
            "0.2.0.0",
            Arch::X64,
        )
        .unwrap();
        assert_eq!(out, "[version]\ndriverver = 11/21/2026,0.2.0.0 ; set by the build\n");
    }

    #[test]
    fn refuses_a_template_without_driver_ver() {
        assert!(
            stamp("[Version]\nClass = NetService\n[Other]\nDriverVer =\n", DATE, "0.1.0.0", Arch::X64)
                .is_err()
        );
        assert!(stamp("[Version]\nDriverVer =\nDriverVer =\n", DATE, "0.1.0.0", Arch::X64).is_err());
    }

    #[test]
    fn the_project_template_stamps_cleanly() {
        let template = include_str!("../../inf/nbshm.inx");
        for arch in Arch::ALL {
            let out = stamp(template, DATE, "0.1.0.0", arch).unwrap();
            assert!(!out.contains("$ARCH$"));
            assert!(out.contains(&format!("NT{}", arch.inf_arch())));
            assert_eq!(out.lines().filter(|l| l.starts_with("DriverVer")).count(), 1);
            assert!(out.lines().any(|l| l.starts_with("DriverVer") && l.ends_with("= 11/21/2026,0.1.0.0")));
            // Everything but the two stamped things is unchanged.
            assert_eq!(out.lines().count(), template.lines().count());
        }
    }
}
