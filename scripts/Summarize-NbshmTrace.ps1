<#
.SYNOPSIS
    Summarizes a decoded nbshm trace per adapter and per shared-memory handle.

.DESCRIPTION
    Runs nbshm-trace.exe on the XML that Convert-NbshmTrace.ps1 wrote (tracerpt -of XML, or
    netsh trace convert dump=XML). The parsing and the summary are nbshm-trace's (Rust, the same
    code the project tests on Linux against a decoded sample it generates): this script only
    finds the tool, runs it, and saves the JSON form next to the XML.

    Output, per module (adapter): the latest UsageSnapshot per direction (NBLs, NET_BUFFERs,
    walked, with shared memory, segments, shared bytes, longest chain, anomalies by kind), the
    distinct handles, the latest HandleUsage of every handle (segments, bytes, smallest offset,
    largest end), and, when the trace holds verbose events, the same figures recounted from the
    per-segment events. The profile's CaptureStateOnSave makes every trace end with the totals.

    nbshm-trace.exe: build it with `cargo build --release -p nbshm-trace` (target\release\) and
    copy it next to this script or the package, or put it on PATH.

.PARAMETER XmlPath
    The decoded trace (from Convert-NbshmTrace.ps1).

.PARAMETER OutDir
    Where to write summary.json (default: next to the XML).

.PARAMETER ToolPath
    Folder holding nbshm-trace.exe (searched before this script's folder and PATH).

.EXAMPLE
    .\Summarize-NbshmTrace.ps1 -XmlPath C:\nbshm\traces\nbshm-verbose-20260101-120000.xml
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$XmlPath,
    [string]$OutDir,
    [string]$ToolPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

if (-not (Test-Path -LiteralPath $XmlPath -PathType Leaf)) {
    Stop-NbshmWithError "the decoded trace '$XmlPath' does not exist." `
        'Run .\Convert-NbshmTrace.ps1 -EtlPath <trace.etl> first.'
}
$xml = (Resolve-Path -LiteralPath $XmlPath).Path
if (-not $OutDir) { $OutDir = Split-Path -Parent $xml }
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null

$tool = Find-NbshmTool -Names @('nbshm-trace.exe') -Folders @($ToolPath, $PSScriptRoot, (Split-Path -Parent $PSScriptRoot))
if (-not $tool) {
    Stop-NbshmWithError 'nbshm-trace.exe was not found (in -ToolPath, next to this script, or on PATH).' `
        'On the build machine: cargo build --release -p nbshm-trace, then copy target\release\nbshm-trace.exe next to this script.'
}

Write-NbshmStep "Summary of $xml"
Invoke-NbshmNative -FilePath $tool -ArgumentList @('summarize', $xml) `
    -Hint 'Is the file a tracerpt/netsh XML of an nbshm trace? Open it and look for Nbshm.SharedMemoryFilter events.'

$json = Join-Path $OutDir 'summary.json'
$lines = Invoke-NbshmNative -FilePath $tool -ArgumentList @('summarize', $xml, '--json') -Quiet -PassThru
Set-Content -LiteralPath $json -Value ($lines -join "`n") -Encoding ASCII
Write-Host "JSON summary: $json"
[pscustomobject]@{ XmlPath = $xml; SummaryPath = $json }
