<#
.SYNOPSIS
    One test pass on a prepared VM: (install) -> check binding -> start trace -> traffic ->
    (toggle binding) -> stop trace -> decode -> summarize -> nbshmctl status.

.DESCRIPTION
    Prerequisite: Enable-TestSigning.ps1 has run and the machine was restarted.
    The traffic server must already be running on the peer (Invoke-Traffic.ps1 -Role Server
    there) unless -NoTraffic is given; this script runs the client side.

    When any step fails, the trace is still stopped (saved if it was running), and the script
    stops with that step's message.

    Calls scripts\Summarize-NbshmTrace.ps1 when it exists, passing only the parameters it
    declares among -EtlPath, -XmlPath, -CsvPath and -OutDir.

.PARAMETER PackageDir
    When given, (re)installs the package first (Install-Nbshm.ps1 -Reinstall).

.PARAMETER Peer
    Address of the traffic server.

.PARAMETER NoTraffic
    Record for -DurationSeconds without generating traffic (idle or externally driven).

.PARAMETER Reverse
    Traffic flows server -> client (this machine receives). Same as the server's -Reverse.

.PARAMETER AdapterName
    Adapter whose binding must be enabled (and toggled with -ToggleBinding).

.PARAMETER ToggleBinding
    Disable and re-enable the binding after traffic, to record Pause/Detach/Attach/Restart.

.EXAMPLE
    .\Run-NbshmTest.ps1 -PackageDir C:\nbshm\nbshm_package -Peer 192.0.2.20 -ToolPath C:\tools `
        -AdapterName 'Ethernet 2' -Detail Verbose -ToggleBinding
#>
[CmdletBinding()]
param(
    [string]$PackageDir,
    [string]$Peer,
    [switch]$NoTraffic,
    [switch]$Reverse,
    [ValidateSet('Auto', 'CtsTraffic', 'NTttcp', 'Iperf3')][string]$TrafficTool = 'Auto',
    [string[]]$ToolPath = @(),
    [ValidateRange(1, 86400)][int]$DurationSeconds = 30,
    [ValidateRange(1, 1024)][int]$Connections = 8,
    [ValidateSet('Verbose', 'Light')][string]$Detail = 'Verbose',
    [ValidateSet('Auto', 'Wpr', 'Tracelog', 'Logman')][string]$TraceTool = 'Auto',
    [string]$TracelogPath,
    [string]$OutDir = (Join-Path $env:SystemDrive 'nbshm\traces'),
    [string]$AdapterName,
    [switch]$ToggleBinding,
    [string]$NbshmctlPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

Assert-NbshmAdmin
if (-not $NoTraffic -and -not $Peer) {
    Stop-NbshmWithError 'no -Peer given.' 'Pass -Peer <traffic server address> (run Invoke-Traffic.ps1 -Role Server there first), or -NoTraffic.'
}

$bindingArgs = @{}
if ($AdapterName) { $bindingArgs['AdapterName'] = $AdapterName }
if ($NbshmctlPath) { $bindingArgs['NbshmctlPath'] = $NbshmctlPath }

$traceArgs = @{ Detail = $Detail; Tool = $TraceTool; OutDir = $OutDir }
if ($TracelogPath) { $traceArgs['TracelogPath'] = $TracelogPath }

$tracing = $false
$etl = $null
$stopError = $null
try {
    if ($PackageDir) {
        # Trace the install too: DriverLoaded and FilterAttached come from it.
        & (Join-Path $PSScriptRoot 'Start-NbshmTrace.ps1') @traceArgs
        $tracing = $true
        $installArgs = @{ PackageDir = $PackageDir; Reinstall = $true }
        if ($AdapterName) { $installArgs['AdapterName'] = $AdapterName }
        & (Join-Path $PSScriptRoot 'Install-Nbshm.ps1') @installArgs
    }
    else {
        & (Join-Path $PSScriptRoot 'Test-Binding.ps1') @bindingArgs
        & (Join-Path $PSScriptRoot 'Start-NbshmTrace.ps1') @traceArgs
        $tracing = $true
    }

    if ($NoTraffic) {
        Write-NbshmStep "Recording $DurationSeconds s without generated traffic"
        Start-Sleep -Seconds $DurationSeconds
    }
    else {
        $trafficArgs = @{
            Role = 'Client'; Peer = $Peer; Tool = $TrafficTool; ToolPath = $ToolPath
            DurationSeconds = $DurationSeconds; Connections = $Connections; Reverse = [bool]$Reverse
        }
        & (Join-Path $PSScriptRoot 'Invoke-Traffic.ps1') @trafficArgs
    }

    if ($ToggleBinding) {
        & (Join-Path $PSScriptRoot 'Test-Binding.ps1') @bindingArgs -Toggle
    }
}
finally {
    if ($tracing) {
        # Runs on success and on failure: never leave the session running. A failure to stop
        # is reported after the step that failed first (if any) has been reported.
        try {
            $etl = & (Join-Path $PSScriptRoot 'Stop-NbshmTrace.ps1') | Select-Object -Last 1
        }
        catch {
            $stopError = $_.Exception.Message
            Write-Warning "Stopping the trace failed: $stopError"
        }
    }
}
if ($stopError -or -not $etl) {
    Stop-NbshmWithError "the trace could not be stopped or saved. $stopError" `
        'Run .\Stop-NbshmTrace.ps1 by hand (or wpr -status / wpr -cancel).'
}

$decoded = & (Join-Path $PSScriptRoot 'Convert-NbshmTrace.ps1') -EtlPath $etl | Select-Object -Last 1

$summarizer = Join-Path $PSScriptRoot 'Summarize-NbshmTrace.ps1'
if (Test-Path -LiteralPath $summarizer) {
    Write-NbshmStep 'Summarize'
    $offered = @{ EtlPath = $decoded.EtlPath; XmlPath = $decoded.XmlPath; CsvPath = $decoded.CsvPath; OutDir = $OutDir }
    $declared = (Get-Command $summarizer).Parameters.Keys
    $summaryArgs = @{}
    foreach ($key in $offered.Keys) {
        if ($declared -contains $key) { $summaryArgs[$key] = $offered[$key] }
    }
    & $summarizer @summaryArgs
}
else {
    Write-Host "(No $summarizer yet: open $($decoded.XmlPath) or the .etl in WPA, Generic Events.)"
}

$ctl = Find-NbshmCtl -Folders @($NbshmctlPath, $PackageDir)
if ($ctl) {
    Write-NbshmStep 'nbshmctl status'
    Invoke-NbshmNative -FilePath $ctl -ArgumentList @('status')
}

Write-NbshmStep 'Result'
Write-Host "Trace:   $($decoded.EtlPath)"
Write-Host "XML/CSV: $($decoded.XmlPath) / $($decoded.CsvPath)"
Write-Host "Lines naming the provider: $($decoded.ProviderLines)"
if ($decoded.ProviderLines -eq 0) {
    Stop-NbshmWithError 'the trace has no nbshm event.' 'See docs/runbook.md, troubleshooting: "No events at all".'
}
