<#
.SYNOPSIS
    Removes the nbshm lightweight filter (netcfg /u nbshm_lwf) and checks that it is gone.

.DESCRIPTION
    netcfg /v /u nbshm_lwf unbinds the filter from every adapter and deletes the nbshm service
    (the INF's DelService with flag 0x200 stops it first). With -RemoveFromDriverStore the
    package is also deleted from the driver store (pnputil /delete-driver oemNN.inf
    /uninstall), so that the next install cannot pick up an old copy.

.PARAMETER RemoveFromDriverStore
    Also delete every nbshm.inf package from the driver store.

.EXAMPLE
    .\Uninstall-Nbshm.ps1 -RemoveFromDriverStore
#>
[CmdletBinding()]
param(
    [switch]$RemoveFromDriverStore
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

Assert-NbshmAdmin

Write-NbshmStep "netcfg: uninstall $($NbshmNames.ComponentId)"
if (@(Get-NbshmBinding).Count -eq 0 -and -not (Get-NbshmDriverState)) {
    Write-Host '  not installed; nothing to remove.'
}
else {
    Invoke-NbshmNative -FilePath 'netcfg.exe' -ArgumentList @('/v', '/u', $NbshmNames.ComponentId) `
        -Hint 'If netcfg asks for a reboot, restart and run this script again to confirm.'
}

Write-NbshmStep 'Verify'
$left = @(Get-NbshmBinding)
if ($left.Count -gt 0) {
    $left | Format-Table -Property @('Name', 'DisplayName', 'Enabled') -AutoSize | Out-String | Write-Host
    Stop-NbshmWithError "bindings of $($NbshmNames.ComponentId) are still present." `
        'Restart the machine and run this script again; netcfg /s n lists the installed net components.'
}
$state = Get-NbshmDriverState
if ($state) {
    Write-Warning ("The service $($NbshmNames.ServiceName) still exists (state $($state.State)); " +
        'it is deleted once the driver has unloaded. Restart if it stays.')
}
else {
    Write-Host "  no binding and no $($NbshmNames.ServiceName) service left."
}

if ($RemoveFromDriverStore) {
    Write-NbshmStep 'Driver store'
    $packages = @(Get-WindowsDriver -Online -All |
        Where-Object { (Split-Path -Leaf $_.OriginalFileName) -eq $NbshmNames.InfName })
    if ($packages.Count -eq 0) {
        Write-Host "  no $($NbshmNames.InfName) package in the driver store."
    }
    foreach ($package in $packages) {
        Invoke-NbshmNative -FilePath 'pnputil.exe' -ArgumentList @('/delete-driver', $package.Driver, '/uninstall') `
            -Hint 'pnputil /enum-drivers lists the packages; delete the right oemNN.inf by hand.'
    }
}
Write-Host ''
Write-Host 'Uninstalled.'
