<#
.SYNOPSIS
    Generates TCP traffic through the filtered adapter with ctsTraffic, NTttcp or iperf3,
    whichever is found (in -ToolPath, then on PATH).

.DESCRIPTION
    Run it twice: -Role Server on the peer machine first, then -Role Client on the other side.
    Data flows client -> server; -Reverse makes it flow server -> client (use the same -Reverse
    on both sides).

    Where the filter must see RECEIVE traffic with shared memory (VMQ): on a Hyper-V host with
    the filter on the physical NIC of an external virtual switch, the receive path that carries
    SharedMemoryInfo is traffic arriving from the wire for a VM on that host. So run the Server
    (receiver) inside that VM and the Client on another machine on the wire, or the Client in the
    VM with -Reverse. See docs/runbook.md.

    Tool commands (each tool's documented options):
      ctsTraffic server: ctsTraffic.exe -listen:* -pattern:<push|pull> -timelimit:<ms> -consoleverbosity:1
      ctsTraffic client: ctsTraffic.exe -target:<peer> -pattern:<push|pull> -connections:<n> -iterations:1
                         -timelimit:<ms> -consoleverbosity:1
      NTttcp receiver:   NTttcp.exe -r -m <n>,*,<receiver IP> -t <s>
      NTttcp sender:     NTttcp.exe -s -m <n>,*,<receiver IP> -t <s>
      iperf3 server:     iperf3.exe -s -1
      iperf3 client:     iperf3.exe -c <peer> -t <s> -P <n> [-R]

.PARAMETER Role
    Server (listen/receive side, start it first) or Client.

.PARAMETER Peer
    Client: the server's address. Server: the client's address (only NTttcp needs it, to pick
    the local address; or give -LocalAddress).

.PARAMETER LocalAddress
    This machine's address on the tested network (NTttcp; default: the route to -Peer).

.PARAMETER Tool
    Auto (default: ctsTraffic, then NTttcp, then iperf3), CtsTraffic, NTttcp or Iperf3.

.PARAMETER ToolPath
    Folder(s) holding the tool executables.

.PARAMETER DurationSeconds
    How long the client sends (default 30).

.PARAMETER Connections
    Parallel connections/threads/streams (default 8).

.PARAMETER Reverse
    Data flows server -> client.

.EXAMPLE
    # In the VM (receives):
    .\Invoke-Traffic.ps1 -Role Server -ToolPath C:\tools
    # On the other machine:
    .\Invoke-Traffic.ps1 -Role Client -Peer 192.0.2.10 -ToolPath C:\tools -DurationSeconds 60
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][ValidateSet('Server', 'Client')][string]$Role,
    [string]$Peer,
    [string]$LocalAddress,
    [ValidateSet('Auto', 'CtsTraffic', 'NTttcp', 'Iperf3')][string]$Tool = 'Auto',
    [string[]]$ToolPath = @(),
    [ValidateRange(1, 86400)][int]$DurationSeconds = 30,
    [ValidateRange(1, 1024)][int]$Connections = 8,
    [switch]$Reverse
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'NbshmCommon.psm1') -Force

$candidates = [ordered]@{
    CtsTraffic = @('ctsTraffic.exe')
    NTttcp     = @('NTttcp.exe')
    Iperf3     = @('iperf3.exe')
}
$exe = $null
if ($Tool -eq 'Auto') {
    foreach ($name in $candidates.Keys) {
        $exe = Find-NbshmTool -Names $candidates[$name] -Folders $ToolPath
        if ($exe) { $Tool = $name; break }
    }
}
else {
    $exe = Find-NbshmTool -Names $candidates[$Tool] -Folders $ToolPath
}
if (-not $exe) {
    $where = if ($ToolPath.Count -gt 0) { "in $($ToolPath -join ', ') or on PATH" } else { 'on PATH' }
    Stop-NbshmWithError "no traffic tool found $where (looked for ctsTraffic.exe, NTttcp.exe, iperf3.exe)." `
        ('Copy one of them to the VM (ctsTraffic and NTttcp are Microsoft tools published on GitHub, ' +
         'iperf3 has Windows builds) and pass -ToolPath <folder>. Without any: ping -n 200 -l 1400 <peer> ' +
         'or a large SMB file copy also crosses the filter, at lower rates.')
}
if ($Role -eq 'Client' -and -not $Peer) {
    Stop-NbshmWithError 'the client needs -Peer <server address>.' 'Start the server side first, then pass its address.'
}

$limitMs = $DurationSeconds * 1000
# The server waits for the client: give it the run time plus two minutes to start the client.
$serverLimitMs = ($DurationSeconds + 120) * 1000
$pattern = if ($Reverse) { 'pull' } else { 'push' }

function Resolve-LocalAddress {
    if ($LocalAddress) { return $LocalAddress }
    if (-not $Peer) {
        Stop-NbshmWithError 'NTttcp needs the receiver address.' 'Pass -LocalAddress <this machine''s IP> or -Peer <other side>.'
    }
    $route = Find-NetRoute -RemoteIPAddress $Peer -ErrorAction SilentlyContinue |
        Where-Object { $_.PSObject.Properties['IPAddress'] } | Select-Object -First 1
    if (-not $route) {
        Stop-NbshmWithError "no route to $Peer." 'Pass -LocalAddress explicitly.'
    }
    return $route.IPAddress
}

switch ($Tool) {
    'CtsTraffic' {
        if ($Role -eq 'Server') {
            $argList = @('-listen:*', "-pattern:$pattern", "-timelimit:$serverLimitMs", '-consoleverbosity:1')
        }
        else {
            $argList = @("-target:$Peer", "-pattern:$pattern", "-connections:$Connections", '-iterations:1',
                "-timelimit:$limitMs", '-consoleverbosity:1')
        }
    }
    'NTttcp' {
        # NTttcp roles are sender/receiver; -m <threads>,*,<receiver IP> on both sides.
        $receives = ($Role -eq 'Server') -xor [bool]$Reverse
        if ($receives) {
            $receiverIp = Resolve-LocalAddress
            $argList = @('-r', '-m', "$Connections,*,$receiverIp", '-t', "$DurationSeconds")
        }
        else {
            if ($Role -eq 'Client') {
                $receiverIp = $Peer
            }
            else {
                # Server that sends (-Reverse): the client receives, at the -Peer address.
                if (-not $Peer) { Stop-NbshmWithError 'with -Reverse, the NTttcp server needs -Peer <client address>.' }
                $receiverIp = $Peer
            }
            $argList = @('-s', '-m', "$Connections,*,$receiverIp", '-t', "$DurationSeconds")
        }
    }
    'Iperf3' {
        if ($Role -eq 'Server') {
            $argList = @('-s', '-1')
        }
        else {
            $argList = @('-c', $Peer, '-t', "$DurationSeconds", '-P', "$Connections")
            if ($Reverse) { $argList += '-R' }
        }
    }
}

$direction = if ($Reverse) { 'server -> client' } else { 'client -> server' }
Write-NbshmStep "Traffic: $Tool as $Role ($direction, $DurationSeconds s, $Connections connections)"
Invoke-NbshmNative -FilePath $exe -ArgumentList $argList `
    -Hint ('Check that the other side runs (server first), that the firewall allows the tool ' +
           '(ctsTraffic port 4444, iperf3 port 5201, NTttcp ports 5001 and up), and the address.')
Write-Host 'Traffic run finished.'
