//! `inf/nbshm.inx` carries every key NDIS needs for a monitoring lightweight filter, and agrees
//! with the names the driver registers (ndis-reference.md section B; names in src/names.rs).

use nbshm::config::KEYWORDS;
use nbshm::host::inf::Inf;
use nbshm::names::{COMPONENT_ID, IMAGE_NAME, SERVICE_NAME, UNIQUE_NAME};

const NETSERVICE_CLASS_GUID: &str = "{4D36E974-E325-11CE-BFC1-08002BE10318}";
const NCF_LW_FILTER: u64 = 0x40000;
const NCF_FILTER: u64 = 0x400;

fn inf() -> Inf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inf/nbshm.inx")).unwrap();
    Inf::parse(&text).unwrap()
}

/// The install sections the [Manufacturer] models point at, with their ComponentIds.
fn install_sections(inf: &Inf) -> Vec<(String, String)> {
    let models = inf.section("Manufacturer").expect("[Manufacturer]");
    assert_eq!(models.lines.len(), 1, "one manufacturer");
    let values = &models.lines[0].values;
    let base = &values[0];
    let decorations = &values[1..];
    assert!(decorations.iter().any(|d| d.starts_with("NT$ARCH$")), "decorations use $ARCH$ for stampinf");
    let mut out = Vec::new();
    for deco in decorations {
        let name = format!("{base}.{deco}");
        let section = inf.section(&name).unwrap_or_else(|| panic!("model section [{name}] missing"));
        for line in &section.lines {
            assert!(line.key.is_some(), "model line has a description");
            out.push((line.values[0].clone(), line.values[1].clone()));
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn version_section_is_a_netservice_inf_ready_for_stampinf() {
    let inf = inf();
    assert_eq!(inf.value("Version", "Signature").unwrap(), "$WINDOWS NT$");
    assert_eq!(inf.value("Version", "Class").unwrap(), "NetService");
    assert_eq!(inf.value("Version", "ClassGUID").unwrap().to_uppercase(), NETSERVICE_CLASS_GUID);
    assert_eq!(inf.value("Version", "CatalogFile").unwrap(), "nbshm.cat");
    assert_eq!(inf.value("Version", "PnpLockdown").unwrap(), "1");
    assert!(!inf.value("Version", "Provider").unwrap().is_empty());
    // The placeholder stampinf fills (`-d * -v *`): present and empty in the template.
    assert_eq!(inf.value("Version", "DriverVer").unwrap(), "");
}

#[test]
fn every_model_installs_the_same_component() {
    let inf = inf();
    for (section, component) in install_sections(&inf) {
        assert_eq!(component, COMPONENT_ID, "ComponentId of {section}");
        assert!(inf.section(&section).is_some(), "install section [{section}]");
    }
}

#[test]
fn install_sections_are_lightweight_filters_with_our_unique_name() {
    let inf = inf();
    for (section, _) in install_sections(&inf) {
        let ch = Inf::parse_int(&inf.value(&section, "Characteristics").unwrap()).unwrap();
        assert_eq!(ch & NCF_LW_FILTER, NCF_LW_FILTER, "{section}: NCF_LW_FILTER");
        assert_eq!(ch & NCF_FILTER, 0, "{section}: NCF_FILTER must not be set");
        // UniqueName at registration = NetCfgInstanceId, braces included.
        assert_eq!(inf.value(&section, "NetCfgInstanceId").unwrap(), UNIQUE_NAME, "{section}");
        // The image is copied by each install variant.
        let copy = inf.value(&section, "CopyFiles").unwrap();
        let files = inf.section(&copy).unwrap_or_else(|| panic!("[{copy}]"));
        assert!(files.lines.iter().any(|l| l.values[0].eq_ignore_ascii_case(IMAGE_NAME)));
        let dest = inf.value("DestinationDirs", &copy).unwrap();
        assert!(dest == "12" || dest == "13", "{copy} goes to DIRID 12 or 13, not {dest}");
        assert!(inf.entries("SourceDisksFiles", IMAGE_NAME).next().is_some());
    }
}

#[test]
fn ndi_keys_make_an_optional_ethernet_monitoring_filter() {
    let inf = inf();
    for (section, _) in install_sections(&inf) {
        let addreg = inf.value(&section, "AddReg").unwrap();
        let lines = &inf.section(&addreg).unwrap().lines;
        let reg = |subkey: &str, name: &str| -> Option<(u64, String)> {
            lines
                .iter()
                .find(|l| {
                    l.values.len() >= 5
                        && l.values[0] == "HKR"
                        && l.values[1].eq_ignore_ascii_case(subkey)
                        && l.values[2].eq_ignore_ascii_case(name)
                })
                .map(|l| {
                    (Inf::parse_int(&l.values[3]).unwrap(), inf.expand(&l.values[4], l.line_no).unwrap())
                })
        };
        assert_eq!(reg("Ndi", "Service"), Some((0, SERVICE_NAME.to_owned())));
        let (ty, co) = reg("Ndi", "CoServices").unwrap();
        assert_eq!(ty, 0x0001_0000, "CoServices is REG_MULTI_SZ");
        assert_eq!(co, SERVICE_NAME);
        assert_eq!(reg("Ndi", "FilterType"), Some((0x0001_0001, "1".into())), "monitoring");
        assert_eq!(reg("Ndi", "FilterRunType"), Some((0x0001_0001, "2".into())), "optional");
        assert_eq!(reg("Ndi", "FilterClass"), None, "FilterClass is for modifying filters only");
        assert_eq!(reg("Ndi\\Interfaces", "UpperRange"), Some((0, "noupper".into())));
        assert_eq!(reg("Ndi\\Interfaces", "LowerRange"), Some((0, "nolower".into())));
        assert_eq!(reg("Ndi\\Interfaces", "FilterMediaTypes"), Some((0, "ethernet".into())));
        assert!(reg("Ndi", "HelpText").is_some());
    }
}

#[test]
fn services_install_and_remove_our_service() {
    let inf = inf();
    for (section, _) in install_sections(&inf) {
        let add = inf.values(&format!("{section}.Services"), "AddService").unwrap();
        assert_eq!(add[0], SERVICE_NAME, "AddService name = ServiceName at registration");
        let svc = &add[2];
        assert_eq!(inf.value(svc, "ServiceType").unwrap(), "1", "kernel driver");
        assert_eq!(inf.value(svc, "LoadOrderGroup").unwrap(), "NDIS");
        let binary = inf.value(svc, "ServiceBinary").unwrap();
        assert!(binary.ends_with(&format!("\\{IMAGE_NAME}")), "{binary}");
        let dirid = if binary.starts_with("%13%") { "13" } else { "12" };
        let copy = inf.value(&section, "CopyFiles").unwrap();
        assert_eq!(inf.value("DestinationDirs", &copy).unwrap(), dirid, "binary runs where it is copied");
        let del = inf.values(&format!("{section}.Remove.Services"), "DelService").unwrap();
        assert_eq!(del[0], SERVICE_NAME);
    }
}

#[test]
fn every_string_token_is_defined() {
    let inf = inf();
    for section in &inf.sections {
        for line in &section.lines {
            for v in line.values.iter().chain(line.key.iter()) {
                inf.expand(v, line.line_no).unwrap_or_else(|e| panic!("[{}] {e}", section.name));
            }
        }
    }
}

#[test]
fn parameters_carry_every_keyword_with_the_drivers_default() {
    let inf = inf();
    for (section, _) in install_sections(&inf) {
        let add = inf.values(&format!("{section}.Services"), "AddService").unwrap();
        let svc = &add[2];
        let addreg = inf.value(svc, "AddReg").unwrap_or_else(|e| panic!("[{svc}] AddReg: {e}"));
        let lines = &inf.section(&addreg).unwrap().lines;
        let mut listed = Vec::new();
        for l in lines {
            assert_eq!(l.values[0], "HKR", "[{addreg}] line {}", l.line_no);
            assert_eq!(l.values[1], "Parameters", "[{addreg}] line {}", l.line_no);
            assert_eq!(Inf::parse_int(&l.values[3]).unwrap(), 0x0001_0001, "{} is a REG_DWORD", l.values[2]);
            listed.push((l.values[2].clone(), Inf::parse_int(&l.values[4]).unwrap()));
        }
        for k in &KEYWORDS {
            let found: Vec<_> = listed.iter().filter(|(n, _)| n == k.name).collect();
            assert_eq!(found.len(), 1, "[{addreg}] sets {} once", k.name);
            assert_eq!(found[0].1, u64::from(k.default), "[{addreg}] {} default", k.name);
        }
        let known = |n: &str| n == "NdisImPlatformBindingOptions" || KEYWORDS.iter().any(|k| k.name == n);
        for (n, _) in &listed {
            assert!(known(n), "[{addreg}] sets {n}, which no code reads");
        }
    }
}
