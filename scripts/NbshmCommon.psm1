<#
.SYNOPSIS
    Names and helpers shared by the nbshm test-VM scripts.

.DESCRIPTION
    Every script in this folder imports this module. The names below are the single copy the
    scripts use; tests/consistency.rs (cargo test, on Linux) checks each of them against
    src/names.rs, inf/nbshm.inx and etw/nbshm.wprp, so a rename in the code that is not made
    here fails the build.

    Works in Windows PowerShell 5.1 (in-box) and PowerShell 7. ASCII only: Windows PowerShell
    reads a file without a byte-order mark in the ANSI code page.
#>

Set-StrictMode -Version Latest
# Module functions do not see the calling script's preference variables: set it here too.
$ErrorActionPreference = 'Stop'

# BEGIN NBSHM NAMES (checked by tests/consistency.rs; keep one `Key = 'value'` per line)
$NbshmNames = [ordered]@{
    ComponentId     = 'nbshm_lwf'
    ServiceName     = 'nbshm'
    InfName         = 'nbshm.inf'
    ImageName       = 'nbshm.sys'
    CatalogName     = 'nbshm.cat'
    UniqueName      = '{cb5200c2-de85-4fab-aff4-ae9256259c70}'
    ProviderName    = 'Nbshm.SharedMemoryFilter'
    ProviderGuid    = 'aab8608e-524a-5040-b756-a83bade72c1f'
    WprpPath        = 'etw\nbshm.wprp'
    WprProfileName  = 'Nbshm'
    SessionName     = 'NbshmTrace'
    VerboseLevel    = '5'
    VerboseKeywords = '0xFFFFFFFFFFFFFFFF'
    LightLevel      = '4'
    LightKeywords   = '0xB'
    TestCertName    = 'WDRLocalTestCert.cer'
    CtlName         = 'nbshmctl.exe'
}
# END NBSHM NAMES

# Where Start-NbshmTrace.ps1 records which tool it started, for Stop-NbshmTrace.ps1.
$NbshmStateDir = Join-Path $env:ProgramData 'nbshm'
$NbshmTraceStateFile = Join-Path $NbshmStateDir 'trace-state.json'

function Write-NbshmStep {
    <# Prints a step banner. #>
    param([Parameter(Mandatory)][string]$Message)
    Write-Host ''
    Write-Host "=== $Message" -ForegroundColor Cyan
}

function Stop-NbshmWithError {
    <# Stops the script with one clear message (and an optional hint on what to do next). #>
    param(
        [Parameter(Mandatory)][string]$Message,
        [string]$Hint
    )
    $text = "nbshm: $Message"
    if ($Hint) { $text = "$text`n  What to do: $Hint" }
    throw $text
}

function Assert-NbshmAdmin {
    <# Stops unless the session is elevated. #>
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        Stop-NbshmWithError 'this step needs an elevated PowerShell.' `
            'Start PowerShell with "Run as administrator" and run the script again.'
    }
}

function Get-NbshmRepoRoot {
    <# The folder that holds scripts\ and etw\ (the repository root, or the copy on the VM). #>
    return (Split-Path -Parent $PSScriptRoot)
}

function Get-NbshmWprpPath {
    <# Full path of etw\nbshm.wprp next to this scripts folder. #>
    return (Join-Path (Get-NbshmRepoRoot) $NbshmNames.WprpPath)
}

function Find-NbshmTool {
    <#
    Finds an executable: first in the given folders, then on PATH. Returns the full path or $null.
    #>
    param(
        [Parameter(Mandatory)][string[]]$Names,
        [string[]]$Folders = @()
    )
    foreach ($folder in $Folders) {
        if (-not $folder) { continue }
        foreach ($name in $Names) {
            $candidate = Join-Path $folder $name
            if (Test-Path -LiteralPath $candidate -PathType Leaf) {
                return (Resolve-Path -LiteralPath $candidate).Path
            }
        }
    }
    foreach ($name in $Names) {
        $command = Get-Command $name -CommandType Application -ErrorAction SilentlyContinue |
            Select-Object -First 1
        if ($command) { return $command.Source }
    }
    return $null
}

function Invoke-NbshmNative {
    <#
    Runs a native program, echoes its output (unless -Quiet), and stops with a clear message
    when its exit code is not one of -SuccessCodes (-AnyExitCode: for information only, never
    stops). With -PassThru, returns the output lines as
    strings; without it, returns nothing.

    stderr is merged into the output. While the program runs, $ErrorActionPreference is
    'Continue': under 'Stop', Windows PowerShell 5.1 turns the first stderr line of a native
    program into a terminating error before its exit code can be checked.
    #>
    param(
        [Parameter(Mandatory)][string]$FilePath,
        [string[]]$ArgumentList = @(),
        [int[]]$SuccessCodes = @(0),
        [string]$Hint,
        [switch]$Quiet,
        [switch]$PassThru,
        [switch]$AnyExitCode
    )
    $display = "$FilePath $($ArgumentList -join ' ')"
    if (-not (Get-Command $FilePath -ErrorAction SilentlyContinue)) {
        Stop-NbshmWithError "'$FilePath' was not found (not on PATH and not a file)." $Hint
    }
    if (-not $Quiet) { Write-Host "> $display" -ForegroundColor DarkGray }
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        # Echo each line as it arrives (long runs such as traffic tools show progress).
        $output = & $FilePath @ArgumentList 2>&1 | ForEach-Object {
            $line = "$_"
            if (-not $Quiet) { Write-Host "  $line" }
            $line
        }
        $code = $LASTEXITCODE
    }
    catch {
        $ErrorActionPreference = $saved
        Stop-NbshmWithError "could not run '$FilePath': $($_.Exception.Message)" $Hint
    }
    finally {
        $ErrorActionPreference = $saved
    }
    if ($null -eq $output) { $output = @() }
    if (-not $AnyExitCode -and $SuccessCodes -notcontains $code) {
        $hex = '0x{0:X8}' -f $code
        $tail = ($output | Select-Object -Last 15) -join "`n    "
        Stop-NbshmWithError "'$display' failed with exit code $code ($hex).`n    $tail" $Hint
    }
    if ($PassThru) { return , [string[]]$output }
}

function Get-NbshmDriverState {
    <#
    The kernel service's state from Win32_SystemDriver (locale-independent), or $null when the
    service does not exist.
    #>
    $filter = "Name='{0}'" -f $NbshmNames.ServiceName
    return (Get-CimInstance -ClassName Win32_SystemDriver -Filter $filter -ErrorAction SilentlyContinue)
}

function Get-NbshmBinding {
    <#
    The filter's bindings (all adapters, hidden ones included). Call it as @(Get-NbshmBinding):
    PowerShell unrolls a returned array, so an empty result arrives as $null.
    #>
    $bindings = Get-NetAdapterBinding -ComponentID $NbshmNames.ComponentId -AllBindings `
        -IncludeHidden -ErrorAction SilentlyContinue
    if ($null -eq $bindings) { return @() }
    return @($bindings)
}

function Test-NbshmTestSigning {
    <#
    $true when the boot entry in use has testsigning on. Reads `bcdedit /enum {current}`; the
    value line is 'testsigning Yes' on English systems, so this is a best-effort check.
    #>
    $lines = Invoke-NbshmNative -FilePath 'bcdedit.exe' -ArgumentList @('/enum', '{current}') -Quiet -PassThru
    return [bool]($lines | Where-Object { $_ -match '^\s*testsigning\s+(Yes|On)\b' })
}

function Find-NbshmCtl {
    <# nbshmctl.exe in the given folders or on PATH, or $null. #>
    param([string[]]$Folders = @())
    return (Find-NbshmTool -Names @($NbshmNames.CtlName) -Folders ($Folders + @($PSScriptRoot)))
}

Export-ModuleMember -Variable @('NbshmNames', 'NbshmStateDir', 'NbshmTraceStateFile') -Function '*'
