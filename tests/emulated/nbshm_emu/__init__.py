"""Emulated-kernel harness for nbshm.sys (speakeasy plays ntoskrnl.exe, this package plays ndis.sys)."""
