"""Label decisions for ``shared/data/wide``, read by ``scripts/label-wide.py``.

One entry per data file (path relative to ``shared/data/wide``) that holds an injection, an
in-memory loader, a look-alike worth naming or attack processes worth listing. Files without an
entry are labelled "attack-no-injection" from their description, and only when they hold no
Sysmon 8 start outside a module and no Sysmon 10 with UNKNOWN frames (the script refuses
otherwise). Process selectors name a process by ``guid`` or by ``host`` + ``pid`` + ``image``;
evidence selectors name records by ``event_id`` and field values (``Field~`` = substring); the
script resolves them to record ids and file lines and fails when one matches nothing.

Decided from the datasets' descriptions (OTRF ``_metadata`` adversary views, the file names and
folders of EVTX-ATTACK-SAMPLES) and the events; never from a detector's output.
"""

from __future__ import annotations

from typing import Any

OTRF = "OTRF_Security-Datasets/datasets/atomic/windows/"
EVTX = "sbousseaden_EVTX-ATTACK-SAMPLES/"
PS = "powershell.exe"

#: what an EVTX-ATTACK-SAMPLES folder holds (the upstream README's tactic folders)
FOLDER_CONTEXT: dict[str, str] = {
    "AutomatedTestingTools": "Automated attack-simulation run",
    "Command and Control": "Command-and-control sample",
    "Credential Access": "Credential-access sample",
    "Defense Evasion": "Defense-evasion sample",
    "Discovery": "Discovery sample",
    "Execution": "Execution sample",
    "Lateral Movement": "Lateral-movement sample",
    "Malware": "Malware sample",
    "Other": "Miscellaneous attack sample",
    "Persistence": "Persistence sample",
    "Privilege Escalation": "Privilege-escalation sample",
    "emotet": "Emotet infection sample",
}

#: Empire's PowerShell launcher (``powershell -noP -sta -w 1 -enc ...``) and agents: script-level
#: C2, no code mapped in memory (as in the curated Empire labels).
EMPIRE_AGENT = {
    "cmd": r"powershell(\.exe)?\"?\s+-(noP|NoP|nop|Win|W|NonI)\b.*-enc\s",
    "reason": "Empire PowerShell launcher/agent (base64 stager, script-level C2; not injection)",
    "optional": True,
}
#: the agent processes themselves: the powershell.exe that ran the tasked commands
EMPIRE_TASKED = {
    "parent_of": r"\b(whoami|net1?|reg|schtasks|rubeus|cmd|powershell)(\.exe)?\"?(\s|$)",
    "parent_image": PS,
    "reason": "Empire PowerShell agent that ran the tasked commands (script-level; not injection)",
    "optional": True,
}
JIT_NOTE = (
    "Sysmon 10 events from the Empire agent with UNKNOWN frames have System.ni.dll / "
    "System.Management.Automation.ni.dll frames around them: JIT-compiled PowerShell, not "
    "injected code."
)


def _ev(event_id: int, what: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "what": what, **fields}


def _mimikatz_agent(
    host: str,
    pid: int,
    module: str,
    confidence: str,
    evidence: list[dict[str, Any]],
    notes: str = "",
) -> dict[str, Any]:
    return {
        "role": "self-injected",
        "host": host,
        "pid": pid,
        "image": PS,
        "technique": f"Empire {module}: Invoke-Mimikatz maps the mimikatz PE reflectively inside "
        "the agent's own powershell.exe (PowerSploit Invoke-ReflectivePEInjection)",
        "attack_ids": ["T1620", "T1003", "T1059.001"],
        "disk_backed": False,
        "confidence": confidence,
        "evidence": evidence,
        "notes": notes,
    }


def _lsass_unknown(pid: int, what: str) -> dict[str, Any]:
    return _ev(
        10, what, SourceProcessId=str(pid), **{"TargetImage~": "lsass", "CallTrace~": "UNKNOWN"}
    )


def _agent_events(pid: int, what: str) -> dict[str, Any]:
    return {"pid_any": pid, "what": what, "max": 2}


W5 = "WORKSTATION5.theshire.local"
W6 = "WORKSTATION6.theshire.local"

DECISIONS: dict[str, dict[str, Any]] = {}

DECISIONS[OTRF + "credential_access/host/empire_mimikatz_logonpasswords.zip"] = {
    "malicious": [
        _mimikatz_agent(
            W5,
            1648,
            "credentials/mimikatz/logonpasswords (agent B7Y8G4XC, powershell 1648)",
            "confirmed",
            [
                _lsass_unknown(
                    1648,
                    "lsass.exe opened 0x1010 from ntdll|KERNELBASE|UNKNOWN: "
                    "the caller is code outside any module and outside the CLR "
                    "(sekurlsa::logonpasswords of the mapped mimikatz)",
                )
            ],
        )
    ],
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "noise_notes": JIT_NOTE,
    "rationale": "Metadata SDWIN-190518202151: agent B7Y8G4XC (powershell 1648) runs "
    "credentials/mimikatz/logonpasswords (Invoke-Mimikatz). The lsass access from an UNKNOWN "
    "frame directly after KERNELBASE (no CLR frames) is the reflectively mapped mimikatz.",
}
DECISIONS[OTRF + "credential_access/host/empire_mimikatz_lsadump_patch.zip"] = {
    "malicious": [
        _mimikatz_agent(
            W5,
            1648,
            "credentials/mimikatz/lsadump (agent B7Y8G4XC, powershell 1648)",
            "confirmed",
            [
                _lsass_unknown(
                    1648,
                    "lsass.exe opened 0x1438 (VM_READ|VM_WRITE|VM_OPERATION) from "
                    "ntdll|KERNELBASE|UNKNOWN: lsadump::lsa /patch of the mapped mimikatz",
                )
            ],
        )
    ],
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "noise_notes": JIT_NOTE,
    "rationale": "Metadata SDWIN-200807103913 (Empire Mimikatz Lsadump LSA Patch, Invoke-Mimikatz "
    "in the agent powershell 1648). lsass is patched from code outside any module.",
}
DECISIONS[OTRF + "credential_access/host/empire_over_pth_patch_lsass.zip"] = {
    "malicious": [
        _mimikatz_agent(
            W6,
            5056,
            "credentials/mimikatz/pth (agent 4EH9PC5S, powershell 5056)",
            "confirmed",
            [
                _lsass_unknown(
                    5056,
                    "lsass.exe opened 0x1010 / 0x1038 from ntdll|KERNELBASE|UNKNOWN "
                    "(sekurlsa::pth patches the logon session in lsass)",
                )
            ],
        ),
        {
            "role": "payload-child",
            "host": W6,
            "guid": "{d273d0f0-5e00-5f69-6b0c-000000000800}",
            "image": "cmd.exe",
            "technique": "cmd.exe started by mimikatz sekurlsa::pth (/run:cmd.exe) from the "
            "reflectively mapped mimikatz in powershell 5056",
            "attack_ids": ["T1550.002", "T1059.003"],
            "disk_backed": None,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    1,
                    "cmd.exe, parent powershell 5056 (the agent running mimikatz pth)",
                    ParentProcessId="5056",
                    **{"Image~": "cmd.exe"},
                )
            ],
        },
    ],
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "noise_notes": JIT_NOTE,
    "rationale": "Metadata SDWIN-190319131123: agent 4EH9PC5S (powershell 5056, WORKSTATION6) runs "
    "credentials/mimikatz/pth with program cmd.exe. lsass is opened from UNKNOWN frames, then the "
    "pth cmd.exe is created.",
}
DECISIONS[OTRF + "credential_access/host/empire_mimikatz_sam_access.zip"] = {
    "malicious": [
        _mimikatz_agent(
            W5,
            5972,
            "credentials/mimikatz/sam (agent WE8XYD3K, powershell 5972)",
            "confirmed",
            [
                _lsass_unknown(
                    5972,
                    "lsass.exe opened from ntdll|KERNELBASE|UNKNOWN (token::elevate "
                    "/ lsadump::sam of the mapped mimikatz)",
                ),
                _ev(
                    10,
                    "process enumeration (0x40 / 0x1400) of svchost/winlogon/... from "
                    "ntdll|KERNELBASE|UNKNOWN: mimikatz token::elevate looking for a SYSTEM token",
                    SourceProcessId="5972",
                    **{"TargetImage~": "svchost", "CallTrace~": "UNKNOWN"},
                ),
            ],
        )
    ],
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "must_not_label": [
        {
            "reason": "the svchost/lsass/winlogon/logonui/fontdrvhost instances opened by the "
            "agent from UNKNOWN frames (0x40 / 0x1400, token enumeration) are read, not injected",
            "count": {"event_id": 10, "SourceProcessId": "5972", "CallTrace~": "UNKNOWN"},
        }
    ],
    "noise_notes": JIT_NOTE,
    "rationale": "Metadata SDWIN-190625103712: agent WE8XYD3K (powershell 5972) runs "
    "credentials/mimikatz/sam (Invoke-Mimikatz). ~4,500 process-access events from UNKNOWN "
    "frames directly after KERNELBASE are the mapped mimikatz.",
}
for _name, _pid, _meta, _mod in (
    (
        "empire_mimikatz_extract_keys.zip",
        5972,
        "SDWIN-190518230752",
        "credentials/mimikatz/extract_tickets (agent WE8XYD3K, powershell 5972)",
    ),
    (
        "empire_mimikatz_backupkeys_dcerpc_smb_lsarpc.zip",
        4380,
        "SDWIN-190518235535",
        "credentials/mimikatz/command lsadump::backupkeys (agent ALYH6ZB2, powershell 4380)",
    ),
    (
        "empire_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip",
        7456,
        "SDWIN-190301174830",
        "credentials/mimikatz/dcsync (agent 1EHYPBVC, powershell 7456)",
    ),
):
    DECISIONS[OTRF + "credential_access/host/" + _name] = {
        "malicious": [
            _mimikatz_agent(
                W5,
                _pid,
                _mod,
                "probable",
                [_agent_events(_pid, "events of the agent process named in the metadata")],
                notes="No event shows the mapping itself: the module works over RPC/LSA APIs and "
                "this capture has no S8/S10 from mimikatz code. Labelled from the metadata.",
            )
        ],
        "other": [EMPIRE_AGENT, EMPIRE_TASKED],
        "noise_notes": JIT_NOTE,
        "rationale": f"Metadata {_meta}: {_mod}; Empire's mimikatz modules run Invoke-Mimikatz, a "
        "reflective PE load into the agent process. Probable: no direct telemetry of the mapped "
        "code.",
    }
DECISIONS[OTRF + "credential_access/host/empire_mimikatz_lsadump_inject_protected_mode.zip"] = {
    "scope": "attack (the attacking agent is not in this capture)",
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "rationale": "Empire mimikatz lsadump /inject (no _metadata description in this snapshot). "
    "The capture holds no PowerShell agent, no Sysmon 8 and no Sysmon 10 with UNKNOWN frames: "
    "the attacking process is not visible, so nothing can be labelled as injection here.",
}
DECISIONS[OTRF + "credential_access/host/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip"] = {
    "malicious": [
        {
            "role": "self-injected",
            "guid": "{8715b604-458d-5f2a-3905-000000000400}",
            "image": "GruntHTTP.exe",
            "technique": "Covenant Grunt runs the DCSync task: SharpSploit loads the embedded "
            "mimikatz PE with its own in-memory PE loader inside the .NET Grunt process; the "
            "task assembly itself is loaded with Assembly.Load",
            "attack_ids": ["T1620", "T1003.006"],
            "disk_backed": False,
            "confidence": "probable",
            "evidence": [
                _ev(
                    3,
                    "GruntHTTP.exe talks RPC (135 / dynamic port) to the DC: DsGetNCChanges",
                    **{"Image~": "GruntHTTP.exe"},
                ),
            ],
            "notes": "No S7/S8/S10 of the mapping in this capture; labelled from the metadata "
            "(adversary view shows mimikatz(powershell) # lsadump::dcsync output).",
        }
    ],
    "rationale": "Metadata SDWIN-200805020926 (Covenant DCSync, SharpSploit.Credentials task). "
    "The Grunt is an executable on the Desktop; its mimikatz runs from memory.",
}
DECISIONS[OTRF + "discovery/host/covenant_getdomaingroup_ldap_searchrequest_domain_admins.zip"] = {
    "possible": [
        {
            "role": "self-injected",
            "guid": "{b34bc01c-3d7f-5f6a-b603-000000000900}",
            "image": "GruntHTTP.exe",
            "technique": "Covenant Grunt loads the GetDomainGroup task assembly (SharpSploit."
            "Enumeration) from memory with Assembly.Load: managed code only, no native code mapped",
            "attack_ids": ["T1620", "T1069.002"],
            "disk_backed": False,
            "confidence": "possible",
            "evidence": [
                _ev(
                    3,
                    "GruntHTTP.exe LDAP (389) to the DC: the domain-group query",
                    **{"Image~": "GruntHTTP.exe"},
                ),
            ],
            "notes": "In-memory .NET assembly load; whether that counts as reflective code "
            "loading for a native-memory detector is a matter of definition.",
        }
    ],
    "rationale": "Metadata SDWIN-200806130039 (Covenant GetDomainGroup Domain Admins).",
}
DECISIONS[OTRF + "collection/host/msf_record_mic.zip"] = {
    "scope": "attack (the in-memory payload's process is not in this capture)",
    "rationale": "Metadata SDWIN-200609225055: Metasploit post/multi/manage/record_mic on an "
    "existing Meterpreter session (172.18.39.6 = WORKSTATION6). Meterpreter runs from memory, "
    "but the capture has no Sysmon 1/3/8/10 of the session process (no connection to the "
    "handler, no remote thread, no access from UNKNOWN frames except explorer.exe's own shell "
    "callbacks), so no process instance can be named. The explorer.exe S10 with UNKNOWN frames "
    "between USER32 frames are window-message callbacks (benign).",
}
DECISIONS[OTRF + "credential_access/host/empire_powerdump_sam_access.zip"] = {
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "noise_notes": "The agent's lsass/csc.exe access from System.ni.dll|UNKNOWN frames is JIT "
    "code of PowerShell (Add-Type compiles C# with csc.exe).",
    "rationale": "Empire powerdump: a PowerShell script reading the SAM hashes through the "
    "registry (Add-Type compiled helper, on disk), no code mapped in memory.",
}
for _name in (
    "credential_access/host/empire_shell_reg_dump_sam.zip",
    "credential_access/host/empire_ninjacopy_dumping_ntds_dit_file.zip",
    "discovery/host/empire_shell_net_local_users.zip",
    "discovery/host/empire_shell_net_localgroup_administrators.zip",
    "discovery/host/empire_shell_rpc_samr_smb_group_domain_admins_standard_user.zip",
    "discovery/host/empire_shell_samr_EnumDomainUsers.zip",
    "discovery/host/empire_find_localadmin_smb_svcctl_OpenSCManager.zip",
    "discovery/host/empire_getsession_dcerpc_smb_srvsvc_NetSessEnum.zip",
    "execution/host/empire_launcher_vbs.zip",
    "persistence/host/empire_persistence_registry_modification_run_keys_elevated_user.zip",
    "persistence/host/empire_persistence_registry_modification_run_keys_standard_user.zip",
    "persistence/host/empire_schtasks_creation_standard_user.zip",
    "privilege_escalation/host/empire_uac_shellapi_fodhelper.zip",
):
    DECISIONS[OTRF + _name] = {
        "other": [EMPIRE_AGENT, EMPIRE_TASKED],
        "noise_notes": JIT_NOTE + " explorer.exe / ctfmon.exe / Azure agent S10 with UNKNOWN "
        "frames between USER32 or CLR frames are window-message callbacks and .NET JIT (benign).",
    }
for _name, _img, _why in (
    (
        "credential_access/host/empire_shell_rubeus_asktgt_createnetonly.zip",
        "rubeus",
        "Rubeus.exe (.NET executable on disk) started through the agent's shell",
    ),
    (
        "credential_access/host/empire_shell_rubeus_asktgt_ptt.zip",
        "rubeus",
        "Rubeus.exe (.NET executable on disk) started through the agent's shell",
    ),
):
    DECISIONS[OTRF + _name] = {
        "other": [EMPIRE_AGENT, EMPIRE_TASKED, {"cmd": _img, "reason": _why}],
        "noise_notes": JIT_NOTE + " Rubeus' own S10 with System.ni.dll|UNKNOWN is JIT code.",
    }
DECISIONS[OTRF + "persistence/host/proxylogon_ssrf_rce_poc.zip"] = {
    "noise_notes": "hostcontrollerservice.exe -> noderunner.exe and MSExchangeHMWorker -> netsh "
    "S10 with UNKNOWN frames are Exchange's own .NET (JIT) code opening its child processes.",
    "must_not_label": [
        {
            "reason": "Exchange .NET services (hostcontrollerservice.exe, msexchangehmworker.exe) "
            "opening their own children from JIT frames: managed code, not injection",
            "n_events": 49,
            "targets": {"noderunner.exe": 48, "netsh.exe": 1},
        }
    ],
    "rationale": "ProxyLogon SSRF + RCE proof of concept: an ASPX web shell written through "
    "Exchange and run by w3wp.exe. Script/web-shell execution, no code mapped in memory.",
}
for _name in ("collection/host/msf_record_mic.zip",):
    pass
for _name, _why in (
    (
        "credential_access/host/cmd_dumping_ntds_dit_file_ntdsutil.zip",
        "ntdsutil IFM copy of ntds.dit",
    ),
    (
        "credential_access/host/cmd_dumping_ntds_dit_file_volume_shadow_copy.zip",
        "vssadmin shadow copy of ntds.dit",
    ),
    (
        "credential_access/host/rdp_interactive_taskmanager_lsass_dump.zip",
        "Task Manager 'Create dump file' of lsass over RDP",
    ),
):
    DECISIONS[OTRF + _name] = {
        "noise_notes": "explorer.exe / ctfmon.exe / taskmgr.exe S10 with UNKNOWN frames between "
        "USER32 / shell frames are window-message callbacks of the interactive session (benign).",
        "rationale": f"{_why}: a LOLBin / GUI credential dump, no code mapped in memory.",
    }
for _name, _src, _why in (
    (
        "credential_access/host/psh_input_capture_promptforcreds.zip",
        "raccine",
        "PowerShell Get-Credential prompt",
    ),
    (
        "credential_access/host/psh_lsass_memory_dump_comsvcs.zip",
        "rundll32",
        "rundll32 comsvcs.dll MiniDump of lsass started from PowerShell",
    ),
    (
        "execution/host/psh_python_webserver.zip",
        "python",
        "python http.server started from PowerShell",
    ),
):
    DECISIONS[OTRF + _name] = {
        "noise_notes": "powershell.exe S10 with UNKNOWN frames (System.ni.dll / "
        "System.Management.Automation.ni.dll around them) are PowerShell's JIT code starting "
        f"its child ({_src}).",
        "rationale": f"{_why}: script-level attack, no code mapped in memory.",
    }

# ---------------------------------------------------------------------------------------------
# EVTX-ATTACK-SAMPLES (the file name and folder are the description)

DECISIONS[EVTX + "Credential Access/CA_keepass_KeeThief_Get-KeePassDatabaseKey.evtx"] = {
    "malicious": [
        {
            "role": "injector",
            "guid": "365ABB72-A512-5CC4-0000-0010C05E1B00",
            "image": PS,
            "technique": "KeeThief Get-KeePassDatabaseKey: PowerShell writes shellcode into "
            "KeePass.exe and starts it with CreateRemoteThread to read the decrypted master key",
            "attack_ids": ["T1055.002", "T1555.005", "T1059.001"],
            "disk_backed": False,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    8,
                    "CreateRemoteThread into KeePass.exe at 0x06160000, no start "
                    "module (private memory)",
                    StartAddress="0x06160000",
                )
            ],
        },
        {
            "role": "injected",
            "guid": "365ABB72-A201-5CC4-0000-00104F500800",
            "image": "KeePass.exe",
            "technique": "KeePass.exe runs the KeeThief shellcode in a remote thread",
            "attack_ids": ["T1055.002", "T1555.005"],
            "disk_backed": False,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    8,
                    "remote thread started in KeePass.exe outside any module",
                    StartAddress="0x06160000",
                )
            ],
        },
    ],
    "must_not_label": [
        {
            "reason": "the first S8 (record 7070) starts at ntdll!DbgUiRemoteBreakin: a debugger "
            "break-in thread, image-backed",
            "n_events": 1,
        }
    ],
    "rationale": "File name: KeeThief Get-KeePassDatabaseKey (harmj0y). Two remote threads from "
    "powershell.exe into KeePass.exe; the second starts in memory outside any module.",
}
DECISIONS[EVTX + "Execution/exec_driveby_cve-2018-15982_sysmon_1_10.evtx"] = {
    "malicious": [
        {
            "role": "self-injected",
            "guid": "365ABB72-C9C1-5CE4-0000-00100B222E00",
            "image": "iexplore.exe",
            "technique": "Drive-by Flash exploit CVE-2018-15982 in Internet Explorer: exploit "
            "shellcode running in the browser's memory creates cmd.exe",
            "attack_ids": ["T1189", "T1203"],
            "disk_backed": False,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    10,
                    "cmd.exe creation handle from kernel32|UNKNOWN x4 frames "
                    "(shellcode outside any module), under IEFRAME/user32",
                    **{"CallTrace~": "UNKNOWN"},
                )
            ],
        },
        {
            "role": "payload-child",
            "guid": "365ABB72-C9C3-5CE4-0000-00101F422E00",
            "image": "cmd.exe",
            "technique": "cmd.exe started by the exploit shellcode",
            "attack_ids": ["T1059.003"],
            "disk_backed": None,
            "confidence": "confirmed",
            "evidence": [_ev(1, "cmd.exe child of iexplore.exe", **{"ParentImage~": "iexplore"})],
        },
    ],
    "rationale": "File name: drive-by CVE-2018-15982 (Flash use-after-free). iexplore.exe opens "
    "its new cmd.exe from code outside any module.",
}
DECISIONS[
    EVTX + "Privilege Escalation/CVE-2020-0796_SMBV3Ghost_LocalPrivEsc_Sysmon_3_1_10.evtx"
] = {
    "malicious": [
        {
            "role": "injector",
            "guid": "747F3D96-FF9D-5F1D-0000-00100AC62400",
            "image": PS,
            "technique": "SMBGhost (CVE-2020-0796) local privilege escalation: after the kernel "
            "write over the loopback SMB connection, the exploit opens winlogon.exe with full "
            "access and injects shellcode that starts a SYSTEM cmd.exe",
            "attack_ids": ["T1068", "T1055"],
            "disk_backed": False,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    10,
                    "winlogon.exe opened 0x1fffff from ntdll|KERNELBASE|UNKNOWN",
                    **{"TargetImage~": "winlogon"},
                ),
                _ev(
                    3,
                    "loopback SMB (127.0.0.1:445): the SMBv3 compression exploit",
                    ProcessId="7400",
                ),
            ],
        },
        {
            "role": "injected",
            "guid": "747F3D96-F938-5F1D-0000-00104B500000",
            "image": "winlogon.exe",
            "technique": "winlogon.exe runs the injected shellcode, which spawns cmd.exe",
            "attack_ids": ["T1055"],
            "disk_backed": False,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    1,
                    "cmd.exe child of winlogon.exe right after the full-access open "
                    "(what the target did next)",
                    **{"ParentImage~": "winlogon"},
                )
            ],
        },
        {
            "role": "payload-child",
            "guid": "747F3D96-0306-5F1E-0000-0010E15F3100",
            "image": "cmd.exe",
            "technique": "SYSTEM shell created by the shellcode in winlogon.exe",
            "attack_ids": ["T1059.003"],
            "disk_backed": None,
            "confidence": "confirmed",
            "evidence": [_ev(1, "cmd.exe child of winlogon.exe", **{"ParentImage~": "winlogon"})],
        },
    ],
    "rationale": "File name: SMBGhost local privilege escalation. The public exploits end by "
    "injecting shellcode into winlogon.exe; the capture shows the full-access open from UNKNOWN "
    "frames and winlogon's cmd.exe child.",
}
DECISIONS[EVTX + "Execution/Exec_sysmon_meterpreter_reversetcp_msipackage.evtx"] = {
    "malicious": [
        {
            "role": "self-injected",
            "guid": "365ABB72-D0E4-5CC8-0000-00103CB73E00",
            "image": "MSI4FFD.tmp",
            "technique": "Meterpreter reverse_tcp in an MSI package (msfvenom -f msi): the "
            "embedded stager executable runs the Meterpreter stage from memory",
            "attack_ids": ["T1218.007", "T1620"],
            "disk_backed": False,
            "confidence": "probable",
            "evidence": [
                _ev(
                    1,
                    "MSI4FFD.tmp started by msiexec /V (the package's payload)",
                    **{"Image~": "MSI4FFD.tmp"},
                ),
            ],
            "notes": "No S8/S10 of the stage; labelled from the file name and the shell it opens.",
        },
        {
            "role": "payload-child",
            "guid": "365ABB72-D0E5-5CC8-0000-0010DADF3E00",
            "image": "cmd.exe",
            "technique": "Meterpreter shell",
            "attack_ids": ["T1059.003"],
            "disk_backed": None,
            "confidence": "probable",
            "evidence": [_ev(1, "cmd child of MSI4FFD.tmp", **{"ParentImage~": "MSI4FFD.tmp"})],
        },
    ],
    "other": [{"cmd": r"^whoami$", "reason": "whoami from the Meterpreter shell"}],
    "rationale": "File name: Meterpreter reverse TCP from an MSI package.",
}
DECISIONS[
    EVTX + "Privilege Escalation/sysmon_13_1_meterpreter_getsystem_NamedPipeImpersonation.evtx"
] = {
    "scope": "attack (the in-memory payload's process is not in this capture)",
    "other": [
        {
            "cmd": r"echo msdhch",
            "reason": "getsystem technique 1: service cmd.exe writing "
            "to the named pipe the Meterpreter process impersonates",
        }
    ],
    "rationale": "File name: Meterpreter getsystem (named-pipe impersonation). Only the service "
    "side is logged (services.exe and its cmd.exe); the Meterpreter process itself has no event.",
}
DECISIONS[EVTX + "Credential Access/babyshark_mimikatz_powershell.evtx"] = {
    "malicious": [
        {
            "role": "self-injected",
            "guid": "365ABB72-AC28-5CB8-0000-0010F3F70700",
            "image": PS,
            "technique": "Invoke-Mimikatz (BabyShark's PowerShell mimikatz): reflective PE load "
            "of mimikatz inside powershell.exe",
            "attack_ids": ["T1620", "T1003.001", "T1059.001"],
            "disk_backed": False,
            "confidence": "probable",
            "evidence": [
                _ev(
                    7,
                    "powershell.exe loads mimikatz' dependency set (cryptdll, samlib, hid, "
                    "WinSCard, vaultcli)",
                    ProcessId="1200",
                    **{"ImageLoaded~": "cryptdll"},
                ),
                _ev(7, "samlib.dll load", ProcessId="1200", **{"ImageLoaded~": "samlib"}),
                _ev(
                    10,
                    "lsass.exe opened 0x1010 (x86 stack walk stops after KERNELBASE)",
                    **{"TargetImage~": "lsass"},
                ),
            ],
            "notes": "Like the curated Invoke-Mimikatz sample: no event shows the mapping itself.",
        }
    ],
    "rationale": "File name: BabyShark mimikatz in PowerShell. powershell 1200 loads the DLLs "
    "mimikatz imports and reads lsass.",
}
DECISIONS[EVTX + "Credential Access/CA_Mimikatz_Memssp_Default_Logs_Sysmon_11.evtx"] = {
    "malicious": [
        {
            "role": "injected",
            "guid": "747F3D96-672C-5F5B-0D00-00000000FC00",
            "image": "lsass.exe",
            "technique": "mimikatz misc::memssp: writes an SSP hook into lsass.exe's memory (no "
            "DLL); lsass then logs credentials to mimilsa.log",
            "attack_ids": ["T1547.005", "T1055", "T1003.001"],
            "disk_backed": False,
            "confidence": "probable",
            "evidence": [
                _ev(
                    11,
                    "lsass.exe creates C:\\Windows\\System32\\mimilsa.log (the "
                    "memssp default log): the patched code runs",
                    **{"TargetFilename~": "mimilsa.log"},
                )
            ],
            "notes": "The injecting mimikatz process is not in this capture.",
        }
    ],
    "rationale": "File name: mimikatz memssp default log. Only lsass' write of mimilsa.log is "
    "logged; it shows code written into lsass is running.",
}
DECISIONS[EVTX + "Credential Access/ppl_bypass_ppldump_knowdll_hijack_sysmon_security.evtx"] = {
    "malicious": [
        {
            "role": "injector",
            "guid": "747F3D96-F415-6081-0000-001040FE4900",
            "image": "PPLdump.exe",
            "technique": "PPLdump: KnownDlls hijack - a section object of a transacted file is "
            "planted as \\KnownDlls\\EventAggregation.dll and a protected services.exe is started "
            "to load it",
            "attack_ids": ["T1055", "T1574", "T1003.001"],
            "disk_backed": True,
            "confidence": "confirmed",
            "evidence": [
                _ev(1, "PPLdump.exe -v lsass lsass.dmp", **{"Image~": "PPLdump.exe"}),
                _ev(
                    1,
                    "protected services.exe started by PPLdump with the dump arguments",
                    **{"ParentImage~": "PPLdump.exe"},
                ),
            ],
        },
        {
            "role": "injected",
            "guid": "747F3D96-F416-6081-0000-001033034A00",
            "image": "services.exe",
            "technique": "services.exe (PPL) runs the planted EventAggregation.dll and dumps lsass",
            "attack_ids": ["T1055", "T1003.001"],
            "disk_backed": True,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    10,
                    "lsass.exe opened from EventAggregation.dll frames, then dbgcore MiniDump",
                    SourceProcessId="7188",
                ),
                _ev(11, "lsass.dmp written by services.exe", **{"TargetFilename~": "lsass.dmp"}),
            ],
        },
    ],
    "rationale": "File name: PPL bypass with PPLdump (KnownDlls hijack). The code runs from an "
    "image section (disk-backed contrast case: no unbacked start address is expected).",
}
DECISIONS[
    EVTX + "AutomatedTestingTools/Malware/DE_timestomp_and_dll_sideloading_and_RunPersist.evtx"
] = {
    "malicious": [
        {
            "role": "self-injected",
            "guid": "365ABB72-7C01-5CC4-0000-0010F9530C00",
            "image": "NvSmart.exe",
            "technique": "PlugX-style side-loading: signed NvSmart.exe loads the unsigned "
            "NvSmartMax.dll, which runs a decrypted payload from private memory (0x0020xxxx)",
            "attack_ids": ["T1574.002", "T1620", "T1055"],
            "disk_backed": False,
            "confidence": "confirmed",
            "evidence": [
                _ev(
                    7,
                    "NvSmart.exe loads the unsigned NvSmartMax.dll",
                    **{"ImageLoaded~": "NvSmartMax.dll"},
                ),
                _ev(
                    10,
                    "cmd.exe creation from UNKNOWN(100013EA..) -> UNKNOWN(0020082A..) frames: "
                    "code outside any module",
                    **{"CallTrace~": "UNKNOWN(0020"},
                ),
            ],
        },
        {
            "role": "payload-child",
            "guid": "365ABB72-7C01-5CC4-0000-00105C5C0C00",
            "image": "cmd.exe",
            "technique": "cmd.exe /A started by the in-memory payload",
            "attack_ids": ["T1059.003"],
            "disk_backed": None,
            "confidence": "confirmed",
            "evidence": [_ev(1, "cmd.exe /A child of NvSmart.exe", CommandLine="cmd.exe /A")],
        },
    ],
    "other": [
        {
            "guid": "365ABB72-7C01-5CC4-0000-00102B3E0C00",
            "reason": "Flash_update.exe dropper "
            "(writes NvSmart.exe + NvSmartMax.dll, timestomps them, deletes itself)",
        },
        {"guid": "365ABB72-7C02-5CC4-0000-0010FD6E0C00", "reason": "cmd /c del of the dropper"},
    ],
    "rationale": "File name: time-stomping, DLL side-loading and Run-key persistence (malware "
    "run). NvSmart.exe's child is created from frames in private memory.",
}
DECISIONS[EVTX + "Credential Access/CA_teamviewer-dumper_sysmon_10.evtx"] = {
    "malicious": [
        {
            "role": "injector",
            "guid": "00247C92-185D-5F1B-0000-0010667A1211",
            "image": "frida-winjector-helper-32.exe",
            "technique": "Frida's injector opens TeamViewer.exe for thread creation and memory "
            "writes to load the Frida agent that reads the stored credentials",
            "attack_ids": ["T1055.001", "T1555"],
            "disk_backed": True,
            "confidence": "probable",
            "evidence": [
                _ev(
                    10,
                    "TeamViewer.exe opened 0x147a (CREATE_THREAD|VM_OPERATION|"
                    "VM_WRITE|VM_READ|QUERY)",
                    **{"TargetImage~": "TeamViewer"},
                )
            ],
            "notes": "Frida writes a small bootstrap into the target and loads frida-agent.dll "
            "from disk; the remote thread itself is not logged.",
        },
        {
            "role": "injected",
            "guid": "00247C92-1562-5F1B-0000-0010318FFE10",
            "image": "TeamViewer.exe",
            "technique": "target of the Frida agent injection",
            "attack_ids": ["T1055.001"],
            "disk_backed": True,
            "confidence": "probable",
            "evidence": [
                _ev(
                    10,
                    "opened for injection by frida-winjector-helper",
                    **{"TargetImage~": "TeamViewer"},
                )
            ],
        },
    ],
    "rationale": "File name: TeamViewer credential dumper (Frida-based).",
}
DECISIONS[EVTX + "Lateral Movement/LM_DCOM_MSHTA_LethalHTA_Sysmon_3_1.evtx"] = {
    "possible": [
        {
            "role": "self-injected",
            "guid": "365ABB72-19E0-5CDA-0000-001006711000",
            "image": "mshta.exe",
            "technique": "LethalHTA: mshta.exe started over DCOM runs an HTA whose script "
            "(DotNetToJScript) loads a .NET payload from memory",
            "attack_ids": ["T1021.003", "T1218.005", "T1620"],
            "disk_backed": False,
            "confidence": "possible",
            "evidence": [
                _ev(1, "mshta.exe -Embedding started by DcomLaunch", **{"Image~": "mshta.exe"}),
                _ev(
                    3,
                    "inbound connection to mshta.exe from the attacker",
                    **{"Image~": "mshta.exe"},
                ),
            ],
            "notes": "Only process creation and the DCOM connection are logged.",
        }
    ],
    "rationale": "File name: DCOM + mshta LethalHTA lateral movement.",
}
DECISIONS[EVTX + "Execution/revshell_cmd_svchost_sysmon_1.evtx"] = {
    "possible": [
        {
            "role": "injected",
            "guid": "747F3D96-3821-5EBB-0000-001040690000",
            "image": "svchost.exe",
            "technique": "reverse shell cmd.exe whose parent is the DcomLaunch/PlugPlay svchost: "
            "code running inside svchost (exploit or injection) started it",
            "attack_ids": ["T1055", "T1059.003"],
            "disk_backed": None,
            "confidence": "possible",
            "evidence": [
                _ev(
                    1,
                    "cmd.exe child of svchost -k DcomLaunch -p -s PlugPlay",
                    **{"ParentCommandLine~": "PlugPlay"},
                )
            ],
            "notes": "Only the shell's creation is logged; how the code got into svchost is not.",
        }
    ],
    "other": [{"guid": "747F3D96-3F20-5EBB-0000-0010035E3600", "reason": "the reverse shell"}],
    "rationale": "File name: reverse shell cmd.exe from svchost.",
}
DECISIONS[EVTX + "Privilege Escalation/Sysmon_UACME_22.evtx"] = {
    "other": [
        {"cmd": r"^UACME\.exe", "reason": "UACME method 22 launcher"},
        {
            "guid": "747F3D96-7930-5D45-0000-001055DE0601",
            "reason": "consent.exe loading the "
            "planted comctl32.dll from consent.exe.local (DLL hijack from disk, not injection)",
        },
        {
            "guid": "747F3D96-7934-5D45-0000-0010CAB90701",
            "reason": "consent.exe loading the "
            "planted comctl32.dll (DLL hijack); its cmd.exe is opened from UNKNOWN frames of the "
            "hijack DLL's code",
        },
    ],
    "rationale": "File name: UACME method 22 (consent.exe .local side-by-side DLL hijack). The "
    "code comes from a DLL on disk (T1574.001 / T1548.002), not injection.",
}
DECISIONS[EVTX + "Privilege Escalation/Sysmon_UACME_63.evtx"] = {
    "other": [
        {
            "guid": "00247C92-9E03-5F7B-0000-0010A645272C",
            "reason": "mmc.exe (WF.msc) "
            "abused by UACME method 63; its cmd.exe is opened from .NET JIT frames "
            "(Accessibility.ni.dll|UNKNOWN)",
        }
    ],
    "rationale": "File name: UACME method 63 (elevated mmc.exe snap-in). Managed code of mmc, "
    "not injection.",
}
for _name, _why in (
    (
        "Defense Evasion/sysmon_10_1_ppid_spoofing.evtx",
        "PPID spoofing from PowerShell: the S10 with UNKNOWN frames are PowerShell JIT code",
    ),
    (
        "Lateral Movement/LM_typical_IIS_webshell_sysmon_1_10_traces.evtx",
        "IIS web shell: w3wp.exe (ASP.NET, JIT) starts cmd.exe",
    ),
    (
        "Lateral Movement/lm_sysmon_18_remshell_over_namedpipe.evtx",
        "remote PowerShell over a named pipe: the S10 with UNKNOWN frames are mscorwks/System.ni "
        "JIT frames",
    ),
    (
        "Lateral Movement/powercat_revShell_sysmon_1_3.evtx",
        "powercat (PowerShell) reverse shell: JIT frames open its children",
    ),
    (
        "Privilege Escalation/Sysmon_13_1_UACBypass_SDCLTBypass.evtx",
        "sdclt UAC bypass from PowerShell (JIT frames)",
    ),
    (
        "Privilege Escalation/Sysmon_13_1_UAC_Bypass_EventVwrBypass.evtx",
        "eventvwr UAC bypass from PowerShell (JIT frames)",
    ),
    (
        "Privilege Escalation/privesc_spoolsv_spl_file_write_sysmon11.evtx",
        "spooler .SPL file write; explorer.exe's S10 with UNKNOWN frames are window-message "
        "callbacks",
    ),
    (
        "Privilege Escalation/sysmon_1_7_elevate_uacbypass_sysprep.evtx",
        "sysprep cryptbase.dll hijack UAC bypass from PowerShell (JIT frames; the DLL is on disk)",
    ),
):
    DECISIONS[EVTX + _name] = {"rationale": f"File name: {_why}. Not injection."}
DECISIONS[EVTX + "Lateral Movement/LM_regsvc_DirectoryServiceExtPt_Lsass_NTDS_AdamXpn.evtx"] = {
    "other": [
        {
            "host": "02694w-win10.threebeesco.com",
            "pid": 632,
            "image": "lsass.exe",
            "reason": "lsass.exe loads the attacker's lsadb.dll from a remote share through the "
            "NTDS DirectoryServiceExtPt value set over remote registry, then connects back: "
            "attacker code from a DLL file (disk-backed, loaded by lsass itself), not injection",
        }
    ],
    "rationale": "File name: remote-registry DirectoryServiceExtPt -> lsass loads an NTDS "
    "extension DLL (Adam Chester's technique). A DLL file loaded by the process itself.",
}

#: the attack commands of the OTRF command-line datasets, as their metadata console view shows
#: them: attack processes, not injection
for _name, _rx, _why in (
    (
        "credential_access/host/cmd_dumping_ntds_dit_file_ntdsutil.zip",
        r"ntdsutil",
        "ntdsutil IFM copy of ntds.dit",
    ),
    (
        "credential_access/host/cmd_dumping_ntds_dit_file_volume_shadow_copy.zip",
        r"vssadmin|HarddiskVolumeShadowCopy|ntds\.dit",
        "shadow-copy copy of ntds.dit",
    ),
    (
        "credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip",
        r"Dumpert",
        "Outflank-Dumpert.exe (lsass dump with direct syscalls, executable on disk)",
    ),
    (
        "credential_access/host/cmd_psexec_lsa_secrets_dump.zip",
        r"PsExec|reg(\.exe)?\s+save",
        "PsExec -s reg save of the LSA secrets",
    ),
    ("credential_access/host/cmd_sam_copy_esentutl.zip", r"esentutl", "esentutl /vss SAM copy"),
    (
        "credential_access/host/psh_lsass_memory_dump_comsvcs.zip",
        r"comsvcs",
        "rundll32 comsvcs.dll MiniDump of lsass",
    ),
    (
        "discovery/host/cmd_discover_iexplorer_version_registry.zip",
        r"reg(\.exe)?\s+query.*Internet Explorer",
        "reg query of the IE version",
    ),
    (
        "discovery/host/cmd_seatbelt_group_user.zip",
        r"Seatbelt",
        "Seatbelt.exe (.NET executable on disk)",
    ),
    (
        "execution/host/cmd_sharpview_pcre_net.zip",
        r"SharpView",
        "SharpView.exe (.NET executable on disk)",
    ),
    (
        "execution/host/psh_python_webserver.zip",
        r"http\.server|advfirewall",
        "python http.server and its firewall rule",
    ),
    (
        "persistence/host/cmd_userinitmprlogonscript_batch.zip",
        r"UserInitMprLogonScript|art\.bat",
        "logon-script persistence",
    ),
    (
        "privilege_escalation/host/cmd_service_mod_fax.zip",
        r"\bsc(\.exe)?\s.*Fax|T1543\.003",
        "Fax service binPath modification and the PowerShell it starts",
    ),
):
    DECISIONS.setdefault(OTRF + _name, {}).setdefault("other", []).append(
        {"cmd": _rx, "reason": f"{_why} (metadata console view); not injection", "optional": True}
    )
