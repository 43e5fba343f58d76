<#
.SYNOPSIS
    Checks that the nbshm filter is installed, bound, enabled and running, and shows the VMQ
    state of the adapters it is bound to.

.DESCRIPTION
    Stops with a message (non-zero exit) when:
      - Get-NetAdapterBinding -ComponentID nbshm_lwf returns nothing (not installed);
      - no binding is enabled (or the one on -AdapterName is not);
      - the nbshm kernel service is not running (sc.exe query nbshm).
    Also prints netcfg /q, the VMQ state (Get-NetAdapterVmq) of the bound adapters and, when
    nbshmctl.exe is found, `nbshmctl status`.

    -Toggle disables and re-enables the binding (on -AdapterName, or on every enabled binding),
    which makes NDIS pause, detach, attach and restart the filter module: the trace then shows
    FilterPaused/FilterDetached/FilterAttached/FilterRestarted. It briefly interrupts traffic on
    that adapter.

.PARAMETER AdapterName
    Adapter (Get-NetAdapter name) on which the binding must be enabled, e.g. the physical NIC
    of the external virtual switch on a Hyper-V host.

.PARAMETER Toggle
    Disable and re-enable the binding once.

.PARAMETER NbshmctlPath
    Folder holding nbshmctl.exe (default: this folder, then PATH).

.EXAMPLE
    .\Test-Binding.ps1 -AdapterName 'Ethernet 2' -Toggle
#>
[CmdletBinding()]
param(
    [string]$AdapterName,
    [switch]$Toggle,
    [string]$NbshmctlPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

$componentId = $NbshmNames.ComponentId

Write-NbshmStep "Bindings of $componentId"
$bindings = @(Get-NbshmBinding)
if ($bindings.Count -eq 0) {
    Stop-NbshmWithError "$componentId has no binding: the filter is not installed." `
        'Run .\Install-Nbshm.ps1 -PackageDir <package>. netcfg /s n lists the installed net components.'
}
$bindings | Format-Table -Property @('Name', 'DisplayName', 'ComponentID', 'Enabled') -AutoSize | Out-String | Write-Host

if ($AdapterName) {
    $target = @($bindings | Where-Object { $_.Name -eq $AdapterName })
    if ($target.Count -eq 0) {
        Stop-NbshmWithError "$componentId is not bound to adapter '$AdapterName'." `
            ('The INF binds to FilterMediaTypes ethernet only; check the adapter name with Get-NetAdapter. ' +
             'On a Hyper-V host the physical NIC of an external switch is the one to watch for VMQ.')
    }
    if (-not $target[0].Enabled) {
        Stop-NbshmWithError "the binding on '$AdapterName' is disabled." `
            "Enable-NetAdapterBinding -Name '$AdapterName' -ComponentID $componentId"
    }
}
$enabled = @($bindings | Where-Object { $_.Enabled })
if ($enabled.Count -eq 0) {
    Stop-NbshmWithError 'every binding is disabled.' `
        "Enable-NetAdapterBinding -Name <adapter> -ComponentID $componentId"
}

if ($Toggle) {
    Write-NbshmStep 'Toggle the binding (detach + attach)'
    $names = if ($AdapterName) { @($AdapterName) } else { @($enabled | ForEach-Object { $_.Name }) }
    foreach ($name in $names) {
        Write-Host "  $name : disable"
        Disable-NetAdapterBinding -Name $name -ComponentID $componentId
        Start-Sleep -Seconds 3
        Write-Host "  $name : enable"
        Enable-NetAdapterBinding -Name $name -ComponentID $componentId
    }
    Start-Sleep -Seconds 3
}

Write-NbshmStep "netcfg /q $componentId"
# For information only: what netcfg /q returns as exit code is not documented.
Invoke-NbshmNative -FilePath 'netcfg.exe' -ArgumentList @('/q', $componentId) -AnyExitCode

Write-NbshmStep "Service $($NbshmNames.ServiceName)"
# sc.exe returns 1060 (ERROR_SERVICE_DOES_NOT_EXIST) when there is no such service.
Invoke-NbshmNative -FilePath 'sc.exe' -ArgumentList @('query', $NbshmNames.ServiceName) -SuccessCodes @(0, 1060)
$state = Get-NbshmDriverState
if (-not $state) {
    Stop-NbshmWithError "the $($NbshmNames.ServiceName) service does not exist." `
        'The install did not complete: run .\Install-Nbshm.ps1 again and read %windir%\INF\setupapi.dev.log.'
}
Write-Host "  Win32_SystemDriver: State=$($state.State) StartMode=$($state.StartMode) Path=$($state.PathName)"
if ($state.State -ne 'Running') {
    $codeIntegrity = Get-WinEvent -LogName 'Microsoft-Windows-CodeIntegrity/Operational' -MaxEvents 5 `
        -ErrorAction SilentlyContinue
    if ($codeIntegrity) {
        Write-Host '  Latest CodeIntegrity events:'
        $codeIntegrity | ForEach-Object { Write-Host "    [$($_.Id)] $($_.TimeCreated) $($_.Message)" }
    }
    Stop-NbshmWithError "the $($NbshmNames.ServiceName) driver is not running (state $($state.State))." `
        ('Usual causes: TESTSIGNING off or Secure Boot on (bcdedit /enum ''{current}''), the certificate not ' +
         'trusted, memory integrity (HVCI) rejecting the image, or DriverEntry failing. See the ' +
         'troubleshooting section of docs/runbook.md.')
}

Write-NbshmStep 'VMQ on the bound adapters'
$anyVmq = $false
foreach ($binding in $enabled) {
    $vmq = Get-NetAdapterVmq -Name $binding.Name -ErrorAction SilentlyContinue
    if ($vmq) {
        Write-Host ("  {0}: VMQ Enabled={1}" -f $binding.Name, $vmq.Enabled)
        if ($vmq.Enabled) { $anyVmq = $true }
    }
    else {
        Write-Host "  $($binding.Name): not VMQ-capable (Get-NetAdapterVmq returns nothing)"
    }
}
if (-not $anyVmq) {
    Write-Warning ('No bound adapter has VMQ enabled: receive indications will carry no ' +
        'SharedMemoryInfo, so expect NET_BUFFER counts but no SharedMemorySegment events. See ' +
        'docs/runbook.md, "Without VMQ".')
}

$ctl = Find-NbshmCtl -Folders @($NbshmctlPath)
if ($ctl) {
    Write-NbshmStep 'nbshmctl status'
    Invoke-NbshmNative -FilePath $ctl -ArgumentList @('status') `
        -Hint 'nbshmctl talks to \\.\Nbshm; the driver creates it in DriverEntry.'
}

Write-Host ''
Write-Host "OK: $componentId is bound ($($enabled.Count) enabled) and $($NbshmNames.ServiceName) is running."
