<#
.SYNOPSIS
    Prepares a test VM to load the test-signed nbshm.sys: turns on TESTSIGNING and trusts the
    WDRLocalTestCert certificate that `cargo make` put into the driver package.

.DESCRIPTION
    Steps, each stopping with a message that says what to do when it fails:
      1. Secure Boot must be off: Windows refuses to change TESTSIGNING while it is on.
      2. Memory integrity (HVCI) and BitLocker are reported (warnings only).
      3. bcdedit /set testsigning on (skipped when already on).
      4. The package's WDRLocalTestCert.cer is added to the LocalMachine Root and
         TrustedPublisher stores (certutil -addstore), so that installing the test-signed
         catalog does not stop on an unknown publisher.
    A restart is needed before test-signed drivers load; -Restart does it.

    Needs an elevated PowerShell. Run it once per VM (again after a new build only if the
    certificate changed: cargo make re-creates it when it is missing on the build machine).

.PARAMETER PackageDir
    The copied package folder (target\<profile>\nbshm_package from the build machine), which
    holds WDRLocalTestCert.cer. Ignored when -CertificatePath is given.

.PARAMETER CertificatePath
    Path of the test certificate (.cer) when it is not in -PackageDir.

.PARAMETER SkipCertificate
    Only turn on TESTSIGNING.

.PARAMETER Restart
    Restart the machine at the end when TESTSIGNING was changed.

.EXAMPLE
    .\Enable-TestSigning.ps1 -PackageDir C:\nbshm\nbshm_package -Restart
#>
[CmdletBinding()]
param(
    [string]$PackageDir,
    [string]$CertificatePath,
    [switch]$SkipCertificate,
    [switch]$Restart
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

Assert-NbshmAdmin

Write-NbshmStep 'Secure Boot'
$secureBoot = $null
try {
    $secureBoot = Confirm-SecureBootUEFI
}
catch {
    # Not a UEFI machine (or the cmdlet is unavailable): Secure Boot cannot be on.
    Write-Host "  Secure Boot state not readable ($($_.Exception.Message)); assuming it is off."
}
if ($secureBoot -eq $true) {
    Stop-NbshmWithError 'Secure Boot is on; Windows does not allow TESTSIGNING while it is on.' `
        ('Hyper-V generation 2 VM: shut it down and run on the HOST: ' +
         'Set-VMFirmware -VMName <vm> -EnableSecureBoot Off . ' +
         'Physical machine: turn Secure Boot off in the firmware setup. Then run this script again.')
}
Write-Host '  Secure Boot is off.'

Write-NbshmStep 'Memory integrity (HVCI) and BitLocker'
$deviceGuard = Get-CimInstance -Namespace 'root\Microsoft\Windows\DeviceGuard' `
    -ClassName Win32_DeviceGuard -ErrorAction SilentlyContinue
if ($deviceGuard -and (@($deviceGuard.SecurityServicesRunning) -contains 2)) {
    Write-Warning ('Memory integrity (HVCI) is running. The driver then has to be HVCI-compatible ' +
        'and signed (test-signed is enough with TESTSIGNING on). If nbshm.sys does not load, look ' +
        'at Event Viewer > Applications and Services Logs > Microsoft > Windows > CodeIntegrity > ' +
        'Operational, or turn Memory integrity off for the test (Windows Security > Device ' +
        'security > Core isolation) and restart.')
}
else {
    Write-Host '  Memory integrity (HVCI) is not running.'
}
if (Get-Command Get-BitLockerVolume -ErrorAction SilentlyContinue) {
    $volume = Get-BitLockerVolume -MountPoint $env:SystemDrive -ErrorAction SilentlyContinue
    if ($volume -and "$($volume.ProtectionStatus)" -eq 'On') {
        Write-Warning ("BitLocker protects $($env:SystemDrive). Changing the boot configuration can " +
            'ask for the recovery key at the next start. Suspend it first: ' +
            "Suspend-BitLocker -MountPoint $($env:SystemDrive) -RebootCount 1")
    }
}

Write-NbshmStep 'TESTSIGNING'
$changed = $false
if (Test-NbshmTestSigning) {
    Write-Host '  testsigning is already on for the current boot entry.'
}
else {
    Invoke-NbshmNative -FilePath 'bcdedit.exe' -ArgumentList @('/set', 'testsigning', 'on') `
        -Hint ('If bcdedit says the value is protected by Secure Boot policy, turn Secure Boot off ' +
               '(see above). Run from an elevated PowerShell.')
    $changed = $true
    Write-Host '  testsigning set to on; it takes effect after a restart.'
}

if (-not $SkipCertificate) {
    Write-NbshmStep "Trust the test certificate ($($NbshmNames.TestCertName))"
    if (-not $CertificatePath) {
        if (-not $PackageDir) {
            Stop-NbshmWithError 'no certificate given.' `
                "Pass -PackageDir <folder with $($NbshmNames.TestCertName)> or -CertificatePath <file.cer>, or -SkipCertificate."
        }
        $CertificatePath = Join-Path $PackageDir $NbshmNames.TestCertName
    }
    if (-not (Test-Path -LiteralPath $CertificatePath -PathType Leaf)) {
        Stop-NbshmWithError "certificate not found: $CertificatePath" `
            'Copy the whole nbshm_package folder from the build machine; cargo make puts the .cer there.'
    }
    $certificate = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 `
        -ArgumentList (Resolve-Path -LiteralPath $CertificatePath).Path
    Write-Host "  Subject: $($certificate.Subject)  Thumbprint: $($certificate.Thumbprint)"
    foreach ($store in @('Root', 'TrustedPublisher')) {
        Invoke-NbshmNative -FilePath 'certutil.exe' -ArgumentList @('-addstore', '-f', $store, $CertificatePath) `
            -Hint 'Run from an elevated PowerShell; check that the file is a DER or Base64 .cer.'
        $present = Get-ChildItem -Path "Cert:\LocalMachine\$store" |
            Where-Object { $_.Thumbprint -eq $certificate.Thumbprint }
        if (-not $present) {
            Stop-NbshmWithError "the certificate is not in LocalMachine\$store after certutil -addstore." `
                'Import it by hand with certlm.msc and run this script again.'
        }
        Write-Host "  In LocalMachine\$store."
    }
}

Write-NbshmStep 'Done'
if ($changed) {
    if ($Restart) {
        Write-Host 'Restarting now; after the restart the desktop shows "Test Mode".'
        Restart-Computer -Force
    }
    else {
        Write-Host 'Restart the machine before installing the driver (Restart-Computer).'
    }
}
else {
    Write-Host 'Nothing to restart for. Next: .\Install-Nbshm.ps1 -PackageDir <package folder>'
}
