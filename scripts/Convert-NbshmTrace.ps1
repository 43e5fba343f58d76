<#
.SYNOPSIS
    Decodes an nbshm .etl into XML and CSV with in-box tools, and counts the provider's events.

.DESCRIPTION
    Tools (-Tool Auto tries tracerpt first):
      tracerpt <etl> -o <xml> -of XML -y   and   tracerpt <etl> -o <csv> -of CSV -y
      netsh trace convert input=<etl> output=<file> dump=XML|CSV overwrite=yes
    Both decode TraceLogging events through the OS (TDH): the event name and every field are in
    the output (in the XML, under each event's EventData). This script does not interpret the
    fields; scripts/Summarize-NbshmTrace.ps1 does that.

    Do not use Get-WinEvent -Path <etl> for these events: it returns the records but drops the
    TraceLogging payload fields (and often the provider name). Use it only to count records.

    Writes an object with EtlPath, XmlPath, CsvPath, Tool and ProviderLines (the number of XML
    lines that name the provider GUID: one per event in tracerpt's layout; a sanity check only).

.PARAMETER EtlPath
    The trace (from Stop-NbshmTrace.ps1).

.PARAMETER OutDir
    Output folder (default: next to the .etl).

.PARAMETER Tool
    Auto (default), Tracerpt or Netsh.

.EXAMPLE
    .\Convert-NbshmTrace.ps1 -EtlPath C:\nbshm\traces\nbshm-verbose-20260101-120000.etl
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$EtlPath,
    [string]$OutDir,
    [ValidateSet('Auto', 'Tracerpt', 'Netsh')][string]$Tool = 'Auto'
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

if (-not (Test-Path -LiteralPath $EtlPath -PathType Leaf)) {
    Stop-NbshmWithError "trace not found: $EtlPath" 'Pass the path that Stop-NbshmTrace.ps1 printed.'
}
$EtlPath = (Resolve-Path -LiteralPath $EtlPath).Path
if (-not $OutDir) { $OutDir = Split-Path -Parent $EtlPath }
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
$base = Join-Path (Resolve-Path -LiteralPath $OutDir).Path ([IO.Path]::GetFileNameWithoutExtension($EtlPath))
$xml = "$base.xml"
$csv = "$base.csv"

$tracerpt = Find-NbshmTool -Names @('tracerpt.exe')
$netsh = Find-NbshmTool -Names @('netsh.exe')
if ($Tool -eq 'Auto') {
    if ($tracerpt) { $Tool = 'Tracerpt' }
    elseif ($netsh) { $Tool = 'Netsh' }
    else { Stop-NbshmWithError 'neither tracerpt.exe nor netsh.exe was found.' 'Both are in-box in %windir%\System32.' }
}

Write-NbshmStep "Decode $EtlPath with $Tool"
switch ($Tool) {
    'Tracerpt' {
        if (-not $tracerpt) { Stop-NbshmWithError 'tracerpt.exe not found.' 'Use -Tool Netsh.' }
        Invoke-NbshmNative -FilePath $tracerpt -ArgumentList @($EtlPath, '-o', $xml, '-of', 'XML', '-y') `
            -Hint 'A TraceLogging trace needs the Windows 10 or later tracerpt; try -Tool Netsh.'
        Invoke-NbshmNative -FilePath $tracerpt -ArgumentList @($EtlPath, '-o', $csv, '-of', 'CSV', '-y')
    }
    'Netsh' {
        if (-not $netsh) { Stop-NbshmWithError 'netsh.exe not found.' 'Use -Tool Tracerpt.' }
        Invoke-NbshmNative -FilePath $netsh -ArgumentList @('trace', 'convert', "input=$EtlPath", "output=$xml",
            'dump=XML', 'overwrite=yes')
        Invoke-NbshmNative -FilePath $netsh -ArgumentList @('trace', 'convert', "input=$EtlPath", "output=$csv",
            'dump=CSV', 'overwrite=yes')
    }
}

foreach ($file in @($xml, $csv)) {
    if (-not (Test-Path -LiteralPath $file -PathType Leaf)) {
        Stop-NbshmWithError "the decoder did not write $file." 'Read its output above; try the other -Tool.'
    }
}

$providerLines = @(Select-String -LiteralPath $xml -Pattern $NbshmNames.ProviderGuid -SimpleMatch).Count
Write-Host "  XML: $xml"
Write-Host "  CSV: $csv"
Write-Host "  Lines naming $($NbshmNames.ProviderName) {$($NbshmNames.ProviderGuid)} in the XML: $providerLines"
if ($providerLines -eq 0) {
    Write-Warning ('The trace holds no event of the provider. Check: was the driver running during the ' +
        'trace (.\Test-Binding.ps1)? Did traffic cross a bound adapter? Was the session started with the ' +
        'right GUID (wpr -profiles etw\nbshm.wprp)? See docs/runbook.md, troubleshooting.')
}
$summarizer = Join-Path $PSScriptRoot 'Summarize-NbshmTrace.ps1'
if (Test-Path -LiteralPath $summarizer) {
    Write-Host "  Next: $summarizer"
}

[pscustomobject]@{
    EtlPath       = $EtlPath
    XmlPath       = $xml
    CsvPath       = $csv
    Tool          = $Tool
    ProviderLines = $providerLines
}
