//! The Windows test-VM artifacts name the same things as the code and the INF.
//!
//! `scripts/` (PowerShell for the test VM), `etw/nbshm.wprp` (WPR profile), `docs/runbook.md`,
//! `.github/workflows/windows.yml` and the README's test-VM section cannot run on Linux. What can
//! be checked here is that every name they use (ComponentId, service, INF, image, catalog,
//! NetCfgInstanceId, ETW provider name and GUID, WPR profile path and names, keyword masks) is
//! the one in `src/names.rs` and `inf/nbshm.inx`, that the WPR profile is well-formed and
//! records the provider the way the scripts expect, and that the scripts follow the rules that
//! make them stop with a clear message (strict mode, `$ErrorActionPreference = 'Stop'`, native
//! tools only through `Invoke-NbshmNative`, which checks exit codes).
//!
//! Each check returns its findings as a list so that `checks_catch_mutations` can prove that a
//! wrong name in any artifact is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nbshm::host::inf::Inf;
use nbshm::names::{COMPONENT_ID, ETW_PROVIDER_NAME, IMAGE_NAME, INF_NAME, SERVICE_NAME, UNIQUE_NAME};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The NetService class GUID (every LWF INF names it).
const NETSERVICE_CLASS_GUID: &str = "4d36e974-e325-11ce-bfc1-08002be10318";

/// The WPR profile, relative to the repository root.
const WPRP_PATH: &str = "etw/nbshm.wprp";
/// The `Name` of every profile in it (WPR requires one name per file).
const WPR_PROFILE_NAME: &str = "Nbshm";
/// The test certificate windows-drivers-rs' cargo-make flow creates and copies into the package.
const TEST_CERT_NAME: &str = "WDRLocalTestCert.cer";
/// The control-device CLI.
const CTL_NAME: &str = "nbshmctl.exe";

// ETW keywords, from the driver's own event table (src/etw.rs).
use nbshm::etw::{KW_ANOMALY, KW_LIFECYCLE, KW_NETBUFFER as KW_NET_BUFFER, KW_SEGMENT, KW_USAGE};
const KW_ALL_OURS: u64 = KW_LIFECYCLE | KW_USAGE | KW_SEGMENT | KW_ANOMALY | KW_NET_BUFFER;
/// The Light profile: periodic usage, lifecycle and anomalies, no per-segment/per-NB events.
const KW_LIGHT: u64 = KW_LIFECYCLE | KW_USAGE | KW_ANOMALY;
const LEVEL_VERBOSE: u8 = 5;
const LEVEL_INFORMATIONAL: u8 = 4;

/// The scripts the runbook and the issue ask for, plus the shared module.
const SCRIPTS: &[&str] = &[
    "Enable-TestSigning.ps1",
    "Install-Nbshm.ps1",
    "Uninstall-Nbshm.ps1",
    "Test-Binding.ps1",
    "Start-NbshmTrace.ps1",
    "Stop-NbshmTrace.ps1",
    "Invoke-Traffic.ps1",
    "Convert-NbshmTrace.ps1",
    "Summarize-NbshmTrace.ps1",
    "Run-NbshmTest.ps1",
];
const MODULE: &str = "NbshmCommon.psm1";

/// Native programs the scripts run; each call must go through `Invoke-NbshmNative`.
const NATIVE_TOOLS: &[&str] = &[
    "netcfg",
    "bcdedit",
    "certutil",
    "sc",
    "wpr",
    "logman",
    "tracelog",
    "tracerpt",
    "netsh",
    "pnputil",
    "ctstraffic",
    "ntttcp",
    "iperf3",
    "nbshmctl",
    "infverif",
];

fn read(rel: &str) -> String {
    let path = Path::new(ROOT).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn provider_guid() -> String {
    format!("{:?}", tracelogging::Guid::from_name(ETW_PROVIDER_NAME))
}

/// Every name the artifacts must use, derived from the code (and cross-checked with the INF in
/// `code_and_inf_agree`).
struct Names {
    component_id: &'static str,
    service: &'static str,
    inf: &'static str,
    image: &'static str,
    catalog: String,
    unique_name: &'static str,
    provider_name: &'static str,
    provider_guid: String,
    package_dir: String,
}

fn names() -> Names {
    let stem = INF_NAME.strip_suffix(".inf").expect("INF_NAME ends in .inf");
    Names {
        component_id: COMPONENT_ID,
        service: SERVICE_NAME,
        inf: INF_NAME,
        image: IMAGE_NAME,
        catalog: format!("{stem}.cat"),
        unique_name: UNIQUE_NAME,
        provider_name: ETW_PROVIDER_NAME,
        provider_guid: provider_guid(),
        // cargo-make packages into target\<profile>\<crate_fs_name>_package.
        package_dir: format!("{}_package", env!("CARGO_PKG_NAME").replace('-', "_")),
    }
}

fn inf() -> Inf {
    Inf::parse(&read("inf/nbshm.inx")).expect("inf/nbshm.inx parses")
}

fn report(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ------------------------------------------------------------------------------------------
// Code and INF
// ------------------------------------------------------------------------------------------

#[test]
fn code_and_inf_agree() {
    let n = names();
    let inf = inf();
    // The INF template's name becomes the INF name (cargo-make copies <name>.inx to <name>.inf).
    assert_eq!(format!("{}.inf", Path::new("inf/nbshm.inx").file_stem().unwrap().to_str().unwrap()), n.inf);
    assert_eq!(inf.value("Version", "CatalogFile").unwrap(), n.catalog);
    let models = inf.section("Manufacturer").unwrap().lines[0].values.clone();
    for decoration in &models[1..] {
        for line in &inf.section(&format!("{}.{decoration}", models[0])).unwrap().lines {
            let install = &line.values[0];
            assert_eq!(line.values[1], n.component_id, "ComponentId in [{}.{decoration}]", models[0]);
            assert_eq!(inf.value(install, "NetCfgInstanceId").unwrap(), n.unique_name);
            assert_eq!(inf.values(&format!("{install}.Services"), "AddService").unwrap()[0], n.service);
            let copy = inf.value(install, "CopyFiles").unwrap();
            assert_eq!(inf.section(&copy).unwrap().lines[0].values[0], n.image);
        }
    }
    // The GUID the scripts and the profile carry is the TraceLogging name hash, which is what
    // `define_provider!` computes at compile time for the same name.
    assert_eq!(n.provider_guid, "aab8608e-524a-5040-b756-a83bade72c1f");
    assert_eq!(n.package_dir, "nbshm_package");
}

// ------------------------------------------------------------------------------------------
// PowerShell module: the one copy of the names the scripts use
// ------------------------------------------------------------------------------------------

/// The `Key = 'value'` lines between the BEGIN/END NBSHM NAMES markers.
fn module_names(text: &str) -> Result<BTreeMap<String, String>, String> {
    let start = text.find("# BEGIN NBSHM NAMES").ok_or("no BEGIN NBSHM NAMES marker")?;
    let end = text.find("# END NBSHM NAMES").ok_or("no END NBSHM NAMES marker")?;
    let mut out = BTreeMap::new();
    for line in text[start..end].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('$') || line == "}" {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("not Key = 'value': {line}"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(|| format!("value not single-quoted: {line}"))?;
        if out.insert(key.trim().to_owned(), value.to_owned()).is_some() {
            return Err(format!("{} listed twice", key.trim()));
        }
    }
    Ok(out)
}

fn check_module(text: &str, wprp: &Wprp) -> Vec<String> {
    let n = names();
    let mut problems = Vec::new();
    let found = match module_names(text) {
        Ok(found) => found,
        Err(e) => return vec![e],
    };
    let verbose = wprp.profile_provider("Verbose");
    let light = wprp.profile_provider("Light");
    let expected: Vec<(&str, String)> = vec![
        ("ComponentId", n.component_id.to_owned()),
        ("ServiceName", n.service.to_owned()),
        ("InfName", n.inf.to_owned()),
        ("ImageName", n.image.to_owned()),
        ("CatalogName", n.catalog.clone()),
        ("UniqueName", n.unique_name.to_owned()),
        ("ProviderName", n.provider_name.to_owned()),
        ("ProviderGuid", n.provider_guid.clone()),
        ("WprpPath", WPRP_PATH.replace('/', "\\")),
        ("WprProfileName", WPR_PROFILE_NAME.to_owned()),
        ("SessionName", "NbshmTrace".to_owned()),
        ("VerboseLevel", verbose.map_or(String::new(), |p| p.level.to_string())),
        ("VerboseKeywords", verbose.map_or(String::new(), |p| format!("0x{:X}", p.keywords))),
        ("LightLevel", light.map_or(String::new(), |p| p.level.to_string())),
        ("LightKeywords", light.map_or(String::new(), |p| format!("0x{:X}", p.keywords))),
        ("TestCertName", TEST_CERT_NAME.to_owned()),
        ("CtlName", CTL_NAME.to_owned()),
    ];
    for (key, want) in &expected {
        match found.get(*key) {
            Some(got) if got == want => {}
            Some(got) => problems.push(format!("{MODULE}: {key} = '{got}', expected '{want}'")),
            None => problems.push(format!("{MODULE}: {key} missing")),
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(k, _)| *k).collect();
    for key in found.keys() {
        if !known.contains(key.as_str()) {
            problems.push(format!("{MODULE}: {key} is not checked by tests/consistency.rs; add it there"));
        }
    }
    problems
}

#[test]
fn powershell_module_carries_the_code_names() {
    let wprp = Wprp::parse(&read(WPRP_PATH)).unwrap();
    report(MODULE, &check_module(&read(&format!("scripts/{MODULE}")), &wprp));
    // The profile path the module names is this file.
    assert!(Path::new(ROOT).join(WPRP_PATH).is_file());
}

// ------------------------------------------------------------------------------------------
// WPR profile
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct WprProvider {
    name: String,
    non_paged: bool,
    level: u8,
    keywords: u64,
}

#[derive(Clone, Debug)]
struct WprProfile {
    id: String,
    name: String,
    description: String,
    detail: String,
    mode: String,
    collectors: Vec<String>,
    providers: Vec<String>,
}

#[derive(Debug)]
struct Wprp {
    collectors: BTreeSet<String>,
    providers: BTreeMap<String, WprProvider>,
    profiles: Vec<WprProfile>,
    /// Kinds of the children of <Profiles>, in document order.
    order: Vec<String>,
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Wprp {
    fn parse(text: &str) -> Result<Self, String> {
        let doc = roxmltree::Document::parse(text).map_err(|e| format!("not well-formed XML: {e}"))?;
        let root = doc.root_element();
        if root.tag_name().name() != "WindowsPerformanceRecorder" {
            return Err(format!("root element is <{}>", root.tag_name().name()));
        }
        let profiles = root
            .children()
            .find(|c| c.has_tag_name("Profiles"))
            .ok_or("no <Profiles> under <WindowsPerformanceRecorder>")?;
        let mut out = Self {
            collectors: BTreeSet::new(),
            providers: BTreeMap::new(),
            profiles: Vec::new(),
            order: Vec::new(),
        };
        for child in profiles.children().filter(roxmltree::Node::is_element) {
            let kind = child.tag_name().name().to_owned();
            let id = child.attribute("Id").ok_or_else(|| format!("<{kind}> without Id"))?.to_owned();
            match kind.as_str() {
                "EventCollector" => {
                    out.collectors.insert(id);
                }
                "EventProvider" => {
                    let keywords = child
                        .descendants()
                        .filter(|d| d.has_tag_name("Keyword"))
                        .map(|k| {
                            k.attribute("Value").and_then(parse_u64).ok_or(format!("bad Keyword in {id}"))
                        })
                        .try_fold(0u64, |acc, k| k.map(|k| acc | k))?;
                    let provider = WprProvider {
                        name: child.attribute("Name").unwrap_or_default().to_owned(),
                        non_paged: child.attribute("NonPagedMemory") == Some("true"),
                        level: child.attribute("Level").and_then(|l| l.parse().ok()).unwrap_or(u8::MAX),
                        keywords,
                    };
                    out.providers.insert(id, provider);
                }
                "Profile" => {
                    let ids = |tag: &str| -> Vec<String> {
                        child
                            .descendants()
                            .filter(|d| d.has_tag_name(tag))
                            .filter_map(|d| d.attribute("Value").map(str::to_owned))
                            .collect()
                    };
                    out.profiles.push(WprProfile {
                        id,
                        name: child.attribute("Name").unwrap_or_default().to_owned(),
                        description: child.attribute("Description").unwrap_or_default().to_owned(),
                        detail: child.attribute("DetailLevel").unwrap_or_default().to_owned(),
                        mode: child.attribute("LoggingMode").unwrap_or_default().to_owned(),
                        collectors: ids("EventCollectorId"),
                        providers: ids("EventProviderId"),
                    });
                }
                _ => {}
            }
            out.order.push(kind);
        }
        Ok(out)
    }

    /// The (single) provider that the File profile of `detail` enables.
    fn profile_provider(&self, detail: &str) -> Option<&WprProvider> {
        let id = format!("{WPR_PROFILE_NAME}.{detail}.File");
        let profile = self.profiles.iter().find(|p| p.id == id)?;
        match profile.providers.as_slice() {
            [one] => self.providers.get(one),
            _ => None,
        }
    }
}

fn check_wprp(text: &str) -> Vec<String> {
    let n = names();
    let wprp = match Wprp::parse(text) {
        Ok(w) => w,
        Err(e) => return vec![format!("{WPRP_PATH}: {e}")],
    };
    let mut problems = Vec::new();
    let mut p = |msg: String| problems.push(format!("{WPRP_PATH}: {msg}"));

    // Microsoft's order for .wprp items: collectors, system providers, event providers, heap
    // providers, profiles.
    let rank = |kind: &str| match kind {
        "EventCollector" | "SystemCollector" => 0,
        "SystemProvider" => 1,
        "EventProvider" => 2,
        "HeapEventProvider" => 3,
        _ => 4,
    };
    if wprp.order.windows(2).any(|w| rank(&w[0]) > rank(&w[1])) {
        p(format!("items out of order: {:?}", wprp.order));
    }
    if wprp.providers.is_empty() {
        p("no <EventProvider>".into());
    }
    for (id, provider) in &wprp.providers {
        let by_name = format!("*{}", n.provider_name);
        if !provider.name.eq_ignore_ascii_case(&n.provider_guid) && provider.name != by_name {
            p(format!("{id}: Name=\"{}\" is neither {} nor {by_name}", provider.name, n.provider_guid));
        }
        if !provider.non_paged {
            p(format!("{id}: NonPagedMemory=\"true\" missing (kernel-mode provider)"));
        }
    }
    let wanted: BTreeSet<String> = ["Verbose", "Light"]
        .iter()
        .flat_map(|d| ["File", "Memory"].map(|m| format!("{WPR_PROFILE_NAME}.{d}.{m}")))
        .collect();
    let have: BTreeSet<String> = wprp.profiles.iter().map(|pr| pr.id.clone()).collect();
    if have != wanted {
        p(format!("profiles {have:?}, expected {wanted:?}"));
    }
    for profile in &wprp.profiles {
        if profile.name != WPR_PROFILE_NAME {
            p(format!("{}: Name=\"{}\", expected {WPR_PROFILE_NAME}", profile.id, profile.name));
        }
        let id = format!("{}.{}.{}", profile.name, profile.detail, profile.mode);
        if profile.id != id {
            p(format!("{}: Id does not match Name.DetailLevel.LoggingMode ({id})", profile.id));
        }
        if !profile.description.contains(n.provider_name) {
            p(format!("{}: Description does not name {}", profile.id, n.provider_name));
        }
        for c in &profile.collectors {
            if !wprp.collectors.contains(c) {
                p(format!("{}: unknown collector {c}", profile.id));
            }
        }
        if profile.providers.is_empty() {
            p(format!("{}: enables no provider", profile.id));
        }
        for id in &profile.providers {
            let Some(provider) = wprp.providers.get(id) else {
                p(format!("{}: unknown provider {id}", profile.id));
                continue;
            };
            let (level, ok) = match profile.detail.as_str() {
                "Verbose" => (LEVEL_VERBOSE, provider.keywords & KW_ALL_OURS == KW_ALL_OURS),
                "Light" => (LEVEL_INFORMATIONAL, provider.keywords == KW_LIGHT),
                other => {
                    p(format!("{}: DetailLevel {other}", profile.id));
                    continue;
                }
            };
            if provider.level != level {
                p(format!("{}: level {} (expected {level})", profile.id, provider.level));
            }
            if !ok {
                p(format!("{}: keywords 0x{:X}", profile.id, provider.keywords));
            }
        }
    }
    if !text.contains(n.provider_name) {
        p(format!("does not name {}", n.provider_name));
    }
    problems
}

#[test]
fn wprp_is_well_formed_and_records_the_provider() {
    report(WPRP_PATH, &check_wprp(&read(WPRP_PATH)));
    let wprp = Wprp::parse(&read(WPRP_PATH)).unwrap();
    // Verbose: everything, including keywords added later.
    assert_eq!(wprp.profile_provider("Verbose").unwrap().keywords, u64::MAX);
}

// ------------------------------------------------------------------------------------------
// Names anywhere in the artifacts
// ------------------------------------------------------------------------------------------

/// Every GUID written as 8-4-4-4-12 hex digits, lowercased.
fn guids(text: &str) -> Vec<String> {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= bytes.len() {
        let boundary_before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let boundary_after = bytes.get(i + 36).is_none_or(|b| !b.is_ascii_alphanumeric());
        let mut pos = i;
        let mut shaped = boundary_before && boundary_after;
        for (g, len) in SHAPE.iter().enumerate() {
            if !shaped {
                break;
            }
            shaped = bytes[pos..pos + len].iter().all(u8::is_ascii_hexdigit);
            pos += len;
            if g < 4 {
                shaped = shaped && bytes[pos] == b'-';
                pos += 1;
            }
        }
        if shaped {
            out.push(text[i..i + 36].to_ascii_lowercase());
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// File names `<stem>.<ext>` (the extension not followed by a letter or digit), stems non-empty.
fn file_names(text: &str, ext: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let needle = format!(".{ext}");
    let mut out = Vec::new();
    for (at, _) in lower.match_indices(&needle) {
        let after = at + needle.len();
        if lower.as_bytes().get(after).is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        let stem_start = lower[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |p| p + 1);
        if stem_start < at {
            out.push(lower[stem_start..after].to_owned());
        }
    }
    out
}

/// Words made of `[A-Za-z0-9_.]`, with a trailing `.` dropped.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty())
}

/// Whitespace tokens with quotes, punctuation, parentheses, `@` and backticks stripped.
fn tokens(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .map(|t| t.trim_matches(|c: char| matches!(c, '\'' | '"' | ',' | ';' | '.' | '(' | ')' | '@' | '`')))
        .filter(|t| !t.is_empty())
        .collect()
}

/// A token that names a network component (as opposed to prose after a flag).
fn looks_like_component(token: &str) -> bool {
    token.contains('_') || token.to_ascii_lowercase().starts_with("nbshm")
}

/// A value that is a placeholder or a PowerShell expression rather than a literal name.
fn is_placeholder(token: &str) -> bool {
    token.starts_with('$') || token.starts_with('<')
}

fn check_names(file: &str, text: &str) -> Vec<String> {
    let n = names();
    let mut problems = Vec::new();
    let mut p = |msg: String| problems.push(format!("{file}: {msg}"));

    let unique = n.unique_name.trim_matches(['{', '}']).to_ascii_lowercase();
    for guid in guids(text) {
        if guid != n.provider_guid && guid != unique && guid != NETSERVICE_CLASS_GUID {
            p(format!("unknown GUID {guid} (provider is {}, NetCfgInstanceId {unique})", n.provider_guid));
        }
    }
    let allowed: [(&str, &[&str]); 4] = [
        ("inf", &[n.inf, "oemnn.inf"]),
        ("sys", &[n.image, "ndis.sys"]),
        ("cat", &[n.catalog.as_str()]),
        ("wprp", &["nbshm.wprp"]),
    ];
    for (ext, ok) in allowed {
        for name in file_names(text, ext) {
            if !ok.contains(&name.as_str()) {
                p(format!("file name {name} (expected one of {ok:?})"));
            }
        }
    }
    let profile_ids: Vec<String> = ["Verbose", "Light"]
        .iter()
        .flat_map(|d| {
            [
                format!("{WPR_PROFILE_NAME}.{d}"),
                format!("{WPR_PROFILE_NAME}.{d}.File"),
                format!("{WPR_PROFILE_NAME}.{d}.Memory"),
            ]
        })
        .collect();
    for word in words(text) {
        if word.starts_with("nbshm_") && word != n.component_id && word != n.package_dir {
            p(format!("{word}: neither the ComponentId {} nor {}", n.component_id, n.package_dir));
        }
        let script_name = Path::new(word)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ps1") || e.eq_ignore_ascii_case("psm1"));
        if word.starts_with("Nbshm.")
            && !script_name
            && word != n.provider_name
            && !profile_ids.iter().any(|id| id == word)
        {
            p(format!("{word}: neither the provider {} nor a WPR profile id", n.provider_name));
        }
    }
    for line in text.lines() {
        let t = tokens(line);
        for (i, pair) in t.windows(2).enumerate() {
            let (flag, value) = (pair[0], pair[1]);
            let lower = flag.to_ascii_lowercase();
            // sc.exe query|qc|queryex <service>
            if matches!(lower.as_str(), "query" | "qc" | "queryex")
                && i > 0
                && matches!(t[i - 1].to_ascii_lowercase().as_str(), "sc" | "sc.exe")
                && !is_placeholder(value)
                && value != n.service
            {
                p(format!("`{}` names service {value}, expected {}", line.trim(), n.service));
            }
            // -ComponentID <id> (NetAdapterBinding cmdlets)
            if lower == "-componentid" && !is_placeholder(value) && value != n.component_id {
                p(format!("`{}` names component {value}, expected {}", line.trim(), n.component_id));
            }
        }
        if line.to_ascii_lowercase().contains("netcfg") {
            for pair in t.windows(2) {
                let (flag, value) = (pair[0].to_ascii_lowercase(), pair[1]);
                if is_placeholder(value) {
                    continue;
                }
                if matches!(flag.as_str(), "/i" | "-i" | "/u" | "-u" | "/q" | "-q")
                    && looks_like_component(value)
                    && value != n.component_id
                {
                    p(format!("`{}`: netcfg {flag} {value}, expected {}", line.trim(), n.component_id));
                }
                let lower = value.to_ascii_lowercase();
                if matches!(flag.as_str(), "/l" | "-l")
                    && Path::new(&lower).extension().is_some_and(|e| e == "inf")
                    && !lower.ends_with(n.inf)
                {
                    p(format!("`{}`: netcfg {flag} {value} is not {}", line.trim(), n.inf));
                }
            }
        }
    }
    problems
}

/// Every artifact this test covers, relative to the repository root.
fn artifacts() -> Vec<String> {
    let mut out: Vec<String> = SCRIPTS.iter().map(|s| format!("scripts/{s}")).collect();
    out.push(format!("scripts/{MODULE}"));
    out.extend(
        [WPRP_PATH, "docs/runbook.md", ".github/workflows/windows.yml", "README.md"].map(str::to_owned),
    );
    out
}

#[test]
fn artifacts_name_only_our_names() {
    let mut problems = Vec::new();
    for file in artifacts() {
        problems.extend(check_names(&file, &read(&file)));
    }
    // Nothing else in scripts/ escapes the check.
    for entry in std::fs::read_dir(Path::new(ROOT).join("scripts")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != MODULE && !SCRIPTS.contains(&name.as_str()) {
            problems.push(format!("scripts/{name} is not covered by tests/consistency.rs; add it"));
        }
    }
    report("names", &problems);
}

// ------------------------------------------------------------------------------------------
// What each artifact must say
// ------------------------------------------------------------------------------------------

fn check_mentions(file: &str, text: &str, required: &[&str]) -> Vec<String> {
    required
        .iter()
        .filter(|r| !text.contains(**r))
        .map(|r| format!("{file}: does not mention `{r}`"))
        .collect()
}

fn runbook_required(n: &Names) -> Vec<String> {
    let mut required: Vec<String> = vec![
        n.component_id.into(),
        n.service.into(),
        n.inf.into(),
        n.image.into(),
        n.catalog.clone(),
        n.unique_name.into(),
        n.provider_name.into(),
        n.provider_guid.clone(),
        WPRP_PATH.replace('/', "\\"),
        format!("target\\debug\\{}", n.package_dir),
        format!("netcfg /v /l C:\\nbshm\\{}\\{} /c s /i {}", n.package_dir, n.inf, n.component_id),
        format!("netcfg /v /u {}", n.component_id),
        format!("Get-NetAdapterBinding -ComponentID {}", n.component_id),
        format!("sc.exe query {}", n.service),
        format!("wpr -start C:\\nbshm\\etw\\nbshm.wprp!{WPR_PROFILE_NAME}.Verbose -filemode"),
        "cargo make".into(),
        "bcdedit /set testsigning on".into(),
        "Set-VMFirmware -VMName".into(),
        "Get-NetAdapterVmq".into(),
        "Set-NetAdapterVmq".into(),
        "VmqWeight".into(),
        "netcfg /s n".into(),
        "pnputil".into(),
        "/INTEGRITYCHECK".into(),
        "tracerpt".into(),
        "netsh trace convert".into(),
        "Get-WinEvent".into(),
        "Summarize-NbshmTrace.ps1".into(),
        "nbshmctl".into(),
        TEST_CERT_NAME.into(),
    ];
    required.extend(SCRIPTS.iter().map(|s| (*s).to_owned()));
    required
}

fn workflow_required(n: &Names) -> Vec<String> {
    vec![
        "NOT RUN BY OUR CI".into(),
        "NEVER EXECUTED".into(),
        "runs-on: windows-2025".into(),
        "Microsoft.Windows.WDK.x64".into(),
        "10.0.26100".into(),
        "WDKContentRoot".into(),
        "WDKBinRoot".into(),
        "WDKToolRoot".into(),
        "WindowsSdkBinPath".into(),
        "Version_Number".into(),
        "LLVM.LLVM".into(),
        "tool: cargo-make".into(),
        "cargo make".into(),
        "infverif.exe".into(),
        "cargo test --workspace".into(),
        format!("target\\debug\\{}\\{}", n.package_dir, n.inf),
        format!("target\\debug\\{}", n.package_dir),
        n.image.into(),
        n.catalog.clone(),
        n.component_id.into(),
        TEST_CERT_NAME.into(),
        WPRP_PATH.replace('/', "\\"),
    ]
}

#[test]
fn runbook_workflow_and_readme_say_what_they_must() {
    let n = names();
    let mut problems = Vec::new();
    let runbook = runbook_required(&n);
    problems.extend(check_mentions(
        "docs/runbook.md",
        &read("docs/runbook.md"),
        &runbook.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let workflow = workflow_required(&n);
    problems.extend(check_mentions(
        ".github/workflows/windows.yml",
        &read(".github/workflows/windows.yml"),
        &workflow.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // Typed into PowerShell, `#...` starts a comment and `{...}` is a script block: both must be
    // quoted in commands the reader copies.
    for bad in ["-guid #", "/enum {current}", "-p {"] {
        for file in ["docs/runbook.md", "README.md"] {
            if read(file).contains(bad) {
                problems.push(format!("{file}: unquoted `{bad}` (PowerShell would mangle it)"));
            }
        }
    }
    problems.extend(check_mentions(
        "README.md",
        &read("README.md"),
        &["## On a Windows test VM", "docs/runbook.md", n.component_id, n.provider_name],
    ));
    report("required mentions", &problems);
}

// ------------------------------------------------------------------------------------------
// Script rules
// ------------------------------------------------------------------------------------------

/// Lines of PowerShell code: `<# ... #>` blocks and `#` comment lines removed.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if in_block {
            if trimmed.contains("#>") {
                in_block = false;
            }
            continue;
        }
        if trimmed.starts_with("<#") {
            in_block = !trimmed.contains("#>");
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push((i + 1, trimmed));
    }
    out
}

fn check_script(file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut p = |msg: String| problems.push(format!("{file}: {msg}"));
    if !text.is_ascii() {
        p("not ASCII (Windows PowerShell 5.1 reads BOM-less files in the ANSI code page)".into());
    }
    if !text.trim_start().starts_with("<#") || !text.contains(".SYNOPSIS") {
        p("no comment-based help (<# .SYNOPSIS ... #>) at the top".into());
    }
    let is_module = Path::new(file).extension().is_some_and(|e| e.eq_ignore_ascii_case("psm1"));
    let required: &[&str] = if is_module {
        &["Set-StrictMode -Version Latest", "function Invoke-NbshmNative", "$LASTEXITCODE"]
    } else {
        &[
            "$ErrorActionPreference = 'Stop'",
            "Set-StrictMode -Version Latest",
            "Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force",
        ]
    };
    for r in required {
        if !text.contains(r) {
            p(format!("missing `{r}`"));
        }
    }
    for (line_no, line) in code_lines(text) {
        // A line that starts with a string is the continuation of an expression, not a call.
        if line.starts_with(['\'', '"']) {
            continue;
        }
        let command = line.trim_start_matches('&').trim_start();
        let mut words = command.split_whitespace();
        let first = words.next().unwrap_or("").to_ascii_lowercase();
        // `'Wpr' {` (a switch label) and `Iperf3 = @(...)` (a hashtable key) are not calls.
        if words.next().is_some_and(|w| w.starts_with('{') || w.starts_with('=')) {
            continue;
        }
        let first = first.trim_matches(['\'', '"']);
        let first = first.strip_suffix(".exe").unwrap_or(first);
        if NATIVE_TOOLS.contains(&first) {
            p(format!(
                "line {line_no}: runs {first} directly; use Invoke-NbshmNative (checks the exit code)"
            ));
        }
    }
    problems
}

#[test]
fn scripts_stop_on_errors_and_use_the_shared_names() {
    let mut problems = Vec::new();
    for script in SCRIPTS.iter().chain([MODULE].iter()) {
        let file = format!("scripts/{script}");
        problems.extend(check_script(&file, &read(&file)));
    }
    // The scripts that act on the driver take its names from the module, not from literals.
    let uses: [(&str, &[&str]); 6] = [
        ("Install-Nbshm.ps1", &["$NbshmNames.ComponentId", "$NbshmNames.InfName", "$NbshmNames.ImageName"]),
        ("Uninstall-Nbshm.ps1", &["$NbshmNames.ComponentId", "$NbshmNames.InfName"]),
        ("Test-Binding.ps1", &["$NbshmNames.ComponentId", "$NbshmNames.ServiceName"]),
        (
            "Start-NbshmTrace.ps1",
            &["$NbshmNames.ProviderGuid", "Get-NbshmWprpPath", "$NbshmNames.WprProfileName"],
        ),
        ("Enable-TestSigning.ps1", &["$NbshmNames.TestCertName", "testsigning"]),
        ("Convert-NbshmTrace.ps1", &["$NbshmNames.ProviderGuid", "tracerpt", "netsh"]),
    ];
    for (script, needles) in uses {
        let file = format!("scripts/{script}");
        problems.extend(check_mentions(&file, &read(&file), needles));
    }
    report("scripts", &problems);
}

// ------------------------------------------------------------------------------------------
// The checks can fail
// ------------------------------------------------------------------------------------------

#[test]
fn checks_catch_mutations() {
    let n = names();
    let wprp_text = read(WPRP_PATH);
    let wprp = Wprp::parse(&wprp_text).unwrap();
    let module = read(&format!("scripts/{MODULE}"));
    let runbook = read("docs/runbook.md");
    let install = read("scripts/Install-Nbshm.ps1");

    // Baselines are clean (the other tests say so too), so each finding below is the mutation's.
    assert!(check_wprp(&wprp_text).is_empty());
    assert!(check_module(&module, &wprp).is_empty());
    assert!(check_names("runbook", &runbook).is_empty());
    assert!(check_script("install", &install).is_empty());

    let flipped_guid = n.provider_guid.replacen('a', "b", 1);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("GUID in the profile", check_wprp(&wprp_text.replace(&n.provider_guid, &flipped_guid))),
        (
            "NonPagedMemory off",
            check_wprp(&wprp_text.replacen(
                "NonPagedMemory=\"true\" Level",
                "NonPagedMemory=\"false\" Level",
                1,
            )),
        ),
        ("Light keywords", check_wprp(&wprp_text.replace("\"0xB\"", "\"0xF\""))),
        ("broken XML", check_wprp(&wprp_text.replacen("</Profiles>", "", 1))),
        (
            "ComponentId in the module",
            check_module(&module.replacen(n.component_id, "nbshm_filter", 1), &wprp),
        ),
        ("GUID in the module", check_module(&module.replace(&n.provider_guid, &flipped_guid), &wprp)),
        ("service in the module", check_module(&module.replacen("'nbshm'", "'nbshm2'", 1), &wprp)),
        (
            "GUID in the runbook",
            check_names("runbook", &runbook.replacen(&n.provider_guid, &flipped_guid, 1)),
        ),
        (
            "ComponentId in the runbook",
            check_names("runbook", &runbook.replacen("/i nbshm_lwf", "/i nbshm_lfw", 1)),
        ),
        (
            "service in the runbook",
            check_names("runbook", &runbook.replacen("sc.exe query nbshm", "sc.exe query nbshmsvc", 1)),
        ),
        ("INF in the runbook", check_names("runbook", &runbook.replacen("\\nbshm.inf", "\\netlwf.inf", 1))),
        ("image in the runbook", check_names("runbook", &runbook.replacen("nbshm.sys", "nbshmflt.sys", 1))),
        (
            "provider name in the runbook",
            check_names("runbook", &runbook.replacen(n.provider_name, "Nbshm.SharedMemFilter", 1)),
        ),
        (
            "native call in a script",
            check_script(
                "install",
                &install.replacen("Invoke-NbshmNative -FilePath 'netcfg.exe'", "& netcfg.exe", 1),
            ),
        ),
        (
            "no ErrorActionPreference",
            check_script("install", &install.replace("$ErrorActionPreference = 'Stop'", "")),
        ),
    ];
    for (what, problems) in cases {
        assert!(!problems.is_empty(), "the mutation `{what}` went unnoticed");
    }
    assert!(
        !check_mentions(
            "runbook",
            &runbook.replace("Get-NetAdapterVmq", "Get-NetAdapter"),
            &["Get-NetAdapterVmq"]
        )
        .is_empty()
    );
}

#[test]
fn guid_scanner_finds_exactly_the_guids() {
    let text = "x {aab8608e-524a-5040-b756-a83bade72c1f} #AAB8608E-524A-5040-B756-A83BADE72C1F\n\
                not: aab8608e-524a-5040-b756-a83bade72c1fz 1aab8608e-524a-5040-b756-a83bade72c1f";
    assert_eq!(guids(text), ["aab8608e-524a-5040-b756-a83bade72c1f"; 2]);
    assert_eq!(
        file_names("C:\\p\\nbshm.inf /c s; oemNN.inf, x.info, .inf", "inf"),
        ["nbshm.inf", "oemnn.inf"]
    );
}
