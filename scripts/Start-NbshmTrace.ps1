<#
.SYNOPSIS
    Starts an ETW session that records the Nbshm.SharedMemoryFilter TraceLogging provider.

.DESCRIPTION
    Tools, in the order -Tool Auto tries them:
      WPR      wpr -start <repo>\etw\nbshm.wprp!Nbshm.<Detail> -filemode
               (in-box on Windows 10 and later; the profile enables the provider by GUID with
               NonPagedMemory="true", as Microsoft asks for kernel-mode providers)
      Tracelog tracelog -start NbshmTrace -f <etl> -guid '#<GUID>' -level <n> -matchanykw <mask>
               (WDK tool: pass -TracelogPath or put tracelog.exe on PATH)
      Logman   logman start NbshmTrace -p '{<GUID>}' <mask> <level> -o <etl> -ets  (in-box)
    Detail Verbose = level 5, every keyword; Light = level 4 with the Lifecycle (0x1), Usage (0x2)
    and Anomaly (0x8) keywords, i.e. no per-segment or per-NET_BUFFER events.

    The provider GUID is the TraceLogging name hash of "Nbshm.SharedMemoryFilter"
    (tests/consistency.rs checks it against the tracelogging crate).

    Start the session before installing the driver or toggling the binding to see
    DriverLoaded and FilterAttached; a later session still gets the UsageSnapshot events.
    Stop it with Stop-NbshmTrace.ps1, which reads what this script recorded in
    %ProgramData%\nbshm\trace-state.json.

.PARAMETER Detail
    Verbose (default) or Light.

.PARAMETER Tool
    Auto (default), Wpr, Tracelog or Logman.

.PARAMETER OutDir
    Folder for the .etl (tracelog/logman write there while recording; WPR writes at stop).

.PARAMETER WprpPath
    The WPR profile (default: ..\etw\nbshm.wprp next to this scripts folder).

.PARAMETER TracelogPath
    Folder holding tracelog.exe (from the WDK's bin\<version>\x64).

.EXAMPLE
    .\Start-NbshmTrace.ps1 -Detail Verbose
#>
[CmdletBinding()]
param(
    [ValidateSet('Verbose', 'Light')][string]$Detail = 'Verbose',
    [ValidateSet('Auto', 'Wpr', 'Tracelog', 'Logman')][string]$Tool = 'Auto',
    [string]$OutDir = (Join-Path $env:SystemDrive 'nbshm\traces'),
    [string]$WprpPath,
    [string]$TracelogPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

Assert-NbshmAdmin

if (Test-Path -LiteralPath $NbshmTraceStateFile) {
    $old = Get-Content -LiteralPath $NbshmTraceStateFile -Raw | ConvertFrom-Json
    Stop-NbshmWithError "a trace started with $($old.Tool) at $($old.Started) is still recorded as running." `
        ('Run .\Stop-NbshmTrace.ps1 first. If that session is gone already, delete ' +
         "$NbshmTraceStateFile (and run wpr -cancel / logman stop $($NbshmNames.SessionName) -ets if needed).")
}

if (-not $WprpPath) { $WprpPath = Get-NbshmWprpPath }
$wpr = Find-NbshmTool -Names @('wpr.exe')
$tracelog = Find-NbshmTool -Names @('tracelog.exe') -Folders @($TracelogPath)
$logman = Find-NbshmTool -Names @('logman.exe')

if ($Tool -eq 'Auto') {
    if ($wpr) { $Tool = 'Wpr' }
    elseif ($tracelog) { $Tool = 'Tracelog' }
    elseif ($logman) { $Tool = 'Logman' }
    else {
        Stop-NbshmWithError 'none of wpr.exe, tracelog.exe, logman.exe was found.' `
            'wpr.exe and logman.exe are in-box in %windir%\System32; tracelog.exe is in the WDK (bin\<version>\x64).'
    }
}

if ($Detail -eq 'Verbose') {
    $level = $NbshmNames.VerboseLevel
    $keywords = $NbshmNames.VerboseKeywords
}
else {
    $level = $NbshmNames.LightLevel
    $keywords = $NbshmNames.LightKeywords
}
$guid = $NbshmNames.ProviderGuid
$session = $NbshmNames.SessionName
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
New-Item -ItemType Directory -Force -Path $NbshmStateDir | Out-Null
$stamp = Get-Date -Format 'yyyyMMdd-HHmmss'
$etl = Join-Path (Resolve-Path -LiteralPath $OutDir).Path ("nbshm-{0}-{1}.etl" -f $Detail.ToLowerInvariant(), $stamp)

Write-NbshmStep "Start trace: $($NbshmNames.ProviderName) {$guid}, $Detail (level $level, keywords $keywords), with $Tool"
switch ($Tool) {
    'Wpr' {
        if (-not $wpr) { Stop-NbshmWithError 'wpr.exe not found.' 'Use -Tool Logman or -Tool Tracelog.' }
        if (-not (Test-Path -LiteralPath $WprpPath -PathType Leaf)) {
            Stop-NbshmWithError "WPR profile not found: $WprpPath" `
                'Copy the etw folder next to the scripts folder (the runbook copies the whole repository checkout).'
        }
        $profileRef = '{0}!{1}.{2}' -f (Resolve-Path -LiteralPath $WprpPath).Path, $NbshmNames.WprProfileName, $Detail
        Invoke-NbshmNative -FilePath $wpr -ArgumentList @('-start', $profileRef, '-filemode') `
            -Hint ('Another WPR recording may be running: wpr -status shows it, wpr -cancel ends it. ' +
                   'wpr -profiles <wprp> lists the profiles of the file.')
    }
    'Tracelog' {
        if (-not $tracelog) {
            Stop-NbshmWithError 'tracelog.exe not found.' 'Pass -TracelogPath <WDK bin\<version>\x64> or use -Tool Logman.'
        }
        Invoke-NbshmNative -FilePath $tracelog -ArgumentList @(
            '-start', $session, '-f', $etl, '-guid', ('#' + $guid),
            '-level', $level, '-matchanykw', $keywords) `
            -Hint "A session named $session may exist already: tracelog -stop $session"
    }
    'Logman' {
        if (-not $logman) { Stop-NbshmWithError 'logman.exe not found.' 'It is in %windir%\System32.' }
        Invoke-NbshmNative -FilePath $logman -ArgumentList @(
            'start', $session, '-p', ('{' + $guid + '}'), $keywords, $level, '-o', $etl, '-ets') `
            -Hint "A session named $session may exist already: logman stop $session -ets"
    }
}

$toolExe = switch ($Tool) { 'Wpr' { $wpr } 'Tracelog' { $tracelog } 'Logman' { $logman } }
$state = [ordered]@{
    Tool    = $Tool
    ToolExe = $toolExe
    Detail  = $Detail
    Session = $session
    EtlPath = $etl
    Started = (Get-Date).ToString('o')
}
$state | ConvertTo-Json | Set-Content -LiteralPath $NbshmTraceStateFile -Encoding ASCII
Write-Host ''
Write-Host "Recording. Stop with .\Stop-NbshmTrace.ps1 (state: $NbshmTraceStateFile)."
