<#
.SYNOPSIS
    Installs the nbshm lightweight filter from a copied driver package and verifies that it is
    bound and running.

.DESCRIPTION
    An NDIS lightweight filter is a network service installed through INetCfg, not a PnP
    device: `netcfg /l <inf> /c s /i <ComponentId>` (pnputil /add-driver only stages a
    package; devcon does not apply). This script:
      1. checks the package folder holds nbshm.inf, nbshm.sys and nbshm.cat and that
         TESTSIGNING is on;
      2. refuses to install over an existing copy (use -Reinstall, or Uninstall-Nbshm.ps1);
      3. runs netcfg /v /l <package>\nbshm.inf /c s /i nbshm_lwf;
      4. runs Test-Binding.ps1: Get-NetAdapterBinding -ComponentID nbshm_lwf, the kernel
         service state (sc.exe query nbshm), VMQ state of the bound adapters.

    Take a VM checkpoint first: the filter starts with every bound adapter.
    To see the DriverLoaded/FilterAttached events, start the trace (Start-NbshmTrace.ps1)
    before running this script.

.PARAMETER PackageDir
    The copied nbshm_package folder (target\<profile>\nbshm_package on the build machine).

.PARAMETER Reinstall
    Uninstall an existing copy first (Uninstall-Nbshm.ps1).

.PARAMETER SkipSigningCheck
    Do not stop when TESTSIGNING looks off (for a production-signed package).

.PARAMETER AdapterName
    Passed to Test-Binding.ps1: the adapter whose binding must be enabled.

.EXAMPLE
    .\Install-Nbshm.ps1 -PackageDir C:\nbshm\nbshm_package
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$PackageDir,
    [switch]$Reinstall,
    [switch]$SkipSigningCheck,
    [string]$AdapterName
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

Assert-NbshmAdmin

Write-NbshmStep 'Package'
if (-not (Test-Path -LiteralPath $PackageDir -PathType Container)) {
    Stop-NbshmWithError "package folder not found: $PackageDir" `
        'Copy target\<profile>\nbshm_package from the build machine and pass its path.'
}
$PackageDir = (Resolve-Path -LiteralPath $PackageDir).Path
foreach ($file in @($NbshmNames.InfName, $NbshmNames.ImageName, $NbshmNames.CatalogName)) {
    $path = Join-Path $PackageDir $file
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        Stop-NbshmWithError "$file is missing from $PackageDir." `
            'Run "cargo make" on the build machine (it stamps the INF, makes and signs the catalog) and copy the whole package folder.'
    }
    Write-Host "  $file : $((Get-Item -LiteralPath $path).Length) bytes"
}
$inf = Join-Path $PackageDir $NbshmNames.InfName
if (-not (Select-String -LiteralPath $inf -Pattern $NbshmNames.ComponentId -SimpleMatch -Quiet)) {
    Stop-NbshmWithError "$inf does not name the component $($NbshmNames.ComponentId)." `
        'The package and these scripts come from different versions: copy both from the same commit.'
}

if (-not $SkipSigningCheck) {
    Write-NbshmStep 'TESTSIGNING'
    if (-not (Test-NbshmTestSigning)) {
        Stop-NbshmWithError 'TESTSIGNING is not on for the current boot entry; a test-signed nbshm.sys will not load.' `
            ('Run .\Enable-TestSigning.ps1 -PackageDir <package> and restart. This check reads the English ' +
             'output of bcdedit /enum ''{current}''; on a localized Windows, or for a production-signed package, ' +
             'check it yourself and pass -SkipSigningCheck.')
    }
    Write-Host '  testsigning is on.'
}

Write-NbshmStep 'Existing installation'
$existing = @(Get-NbshmBinding)
if ($existing.Count -gt 0 -or (Get-NbshmDriverState)) {
    if (-not $Reinstall) {
        Stop-NbshmWithError "$($NbshmNames.ComponentId) is already installed." `
            'Run .\Uninstall-Nbshm.ps1 first, or pass -Reinstall.'
    }
    & (Join-Path $PSScriptRoot 'Uninstall-Nbshm.ps1')
}
else {
    Write-Host '  none.'
}

Write-NbshmStep "netcfg: install $($NbshmNames.ComponentId)"
Invoke-NbshmNative -FilePath 'netcfg.exe' `
    -ArgumentList @('/v', '/l', $inf, '/c', 's', '/i', $NbshmNames.ComponentId) `
    -Hint ('Look at %windir%\INF\setupapi.dev.log (search for nbshm) and at the netcfg output above. ' +
           'If it asks for a reboot, restart and run .\Test-Binding.ps1.')

Write-NbshmStep 'Verify'
$testArgs = @{}
if ($AdapterName) { $testArgs['AdapterName'] = $AdapterName }
& (Join-Path $PSScriptRoot 'Test-Binding.ps1') @testArgs
Write-Host ''
Write-Host "Installed. Remove with .\Uninstall-Nbshm.ps1 (netcfg /u $($NbshmNames.ComponentId))."
