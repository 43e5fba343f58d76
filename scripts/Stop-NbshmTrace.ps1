<#
.SYNOPSIS
    Stops the session that Start-NbshmTrace.ps1 started and writes the .etl file.

.DESCRIPTION
    Reads %ProgramData%\nbshm\trace-state.json to know the tool:
      WPR      wpr -stop <etl>
      Tracelog tracelog -stop NbshmTrace
      Logman   logman stop NbshmTrace -ets
    Then checks that the .etl exists and is not empty, and writes its full path to the output
    (Run-NbshmTest.ps1 uses it). Decode it with Convert-NbshmTrace.ps1.

.PARAMETER EtlPath
    Where to put the .etl (default: the name chosen at start, in the start's -OutDir).

.PARAMETER Cancel
    Discard the recording instead of saving it (wpr -cancel, or stop and delete the file).

.EXAMPLE
    $etl = .\Stop-NbshmTrace.ps1
#>
[CmdletBinding()]
param(
    [string]$EtlPath,
    [switch]$Cancel
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

Assert-NbshmAdmin

if (-not (Test-Path -LiteralPath $NbshmTraceStateFile)) {
    Stop-NbshmWithError "no trace is recorded as running ($NbshmTraceStateFile is missing)." `
        ('Start one with .\Start-NbshmTrace.ps1. To end a session started by hand: wpr -cancel, ' +
         "logman stop $($NbshmNames.SessionName) -ets, or tracelog -stop $($NbshmNames.SessionName).")
}
$state = Get-Content -LiteralPath $NbshmTraceStateFile -Raw | ConvertFrom-Json
if (-not $EtlPath) { $EtlPath = $state.EtlPath }
# Resolved against the PowerShell location (not the process directory, which may differ).
$EtlPath = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($EtlPath)
New-Item -ItemType Directory -Force -Path (Split-Path -Parent $EtlPath) | Out-Null

Write-NbshmStep "Stop trace ($($state.Tool), $($state.Detail), started $($state.Started))"
switch ($state.Tool) {
    'Wpr' {
        $wpr = Find-NbshmTool -Names @('wpr.exe')
        if (-not $wpr) { Stop-NbshmWithError 'wpr.exe not found.' 'It is in %windir%\System32.' }
        if ($Cancel) {
            Invoke-NbshmNative -FilePath $wpr -ArgumentList @('-cancel')
        }
        else {
            Invoke-NbshmNative -FilePath $wpr -ArgumentList @('-stop', $EtlPath) `
                -Hint 'wpr -status shows whether a recording is running; wpr -cancel discards it.'
        }
    }
    'Tracelog' {
        # The tracelog.exe that started the session (it may not be on PATH).
        $tracelog = $state.ToolExe
        if (-not $tracelog -or -not (Test-Path -LiteralPath $tracelog)) { $tracelog = Find-NbshmTool -Names @('tracelog.exe') }
        if (-not $tracelog) {
            Stop-NbshmWithError 'tracelog.exe not found on PATH.' `
                "Put the WDK's bin\<version>\x64 on PATH, or run: tracelog -stop $($state.Session)"
        }
        Invoke-NbshmNative -FilePath $tracelog -ArgumentList @('-stop', $state.Session)
    }
    'Logman' {
        Invoke-NbshmNative -FilePath 'logman.exe' -ArgumentList @('stop', $state.Session, '-ets') `
            -Hint 'logman query -ets lists the running sessions.'
    }
    default {
        Stop-NbshmWithError "unknown tool '$($state.Tool)' in $NbshmTraceStateFile." 'Delete the file and stop the session by hand.'
    }
}
Remove-Item -LiteralPath $NbshmTraceStateFile -Force

if ($state.Tool -ne 'Wpr' -and -not $Cancel) {
    $recorded = $state.EtlPath
    if ($recorded -ne $EtlPath -and (Test-Path -LiteralPath $recorded)) {
        Move-Item -LiteralPath $recorded -Destination $EtlPath -Force
    }
}
if ($Cancel) {
    if ($state.Tool -ne 'Wpr' -and (Test-Path -LiteralPath $state.EtlPath)) {
        Remove-Item -LiteralPath $state.EtlPath -Force
    }
    Write-Host 'Recording discarded.'
    return
}

if (-not (Test-Path -LiteralPath $EtlPath -PathType Leaf)) {
    Stop-NbshmWithError "the trace file was not written: $EtlPath" 'Read the tool output above.'
}
$size = (Get-Item -LiteralPath $EtlPath).Length
if ($size -eq 0) {
    Stop-NbshmWithError "the trace file is empty: $EtlPath" 'Read the tool output above.'
}
Write-Host "Trace: $EtlPath ($size bytes). Decode with .\Convert-NbshmTrace.ps1 -EtlPath '$EtlPath'"
Write-Output $EtlPath
