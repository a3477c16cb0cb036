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
    return _ev(10, what, SourceProcessId=str(pid), **{"TargetImage~": "lsass", "CallTrace~": "UNKNOWN"})


def _agent_events(pid: int, what: str) -> dict[str, Any]:
    return {"pid_any": pid, "what": what, "max": 2}


W5 = "WORKSTATION5.theshire.local"
W6 = "WORKSTATION6.theshire.local"

DECISIONS: dict[str, dict[str, Any]] = {}

DECISIONS[OTRF + "credential_access/host/empire_mimikatz_logonpasswords.zip"] = {
    "malicious": [
        _mimikatz_agent(
            W5, 1648, "credentials/mimikatz/logonpasswords (agent B7Y8G4XC, powershell 1648)",
            "confirmed",
            [_lsass_unknown(1648, "lsass.exe opened 0x1010 from ntdll|KERNELBASE|UNKNOWN: "
                            "the caller is code outside any module and outside the CLR "
                            "(sekurlsa::logonpasswords of the mapped mimikatz)")],
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
            W5, 1648, "credentials/mimikatz/lsadump (agent B7Y8G4XC, powershell 1648)",
            "confirmed",
            [_lsass_unknown(1648, "lsass.exe opened 0x1438 (VM_READ|VM_WRITE|VM_OPERATION) from "
                            "ntdll|KERNELBASE|UNKNOWN: lsadump::lsa /patch of the mapped mimikatz")],
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
            W6, 5056, "credentials/mimikatz/pth (agent 4EH9PC5S, powershell 5056)", "confirmed",
            [_lsass_unknown(5056, "lsass.exe opened 0x1010 / 0x1038 from ntdll|KERNELBASE|UNKNOWN "
                            "(sekurlsa::pth patches the logon session in lsass)")],
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
            "evidence": [_ev(1, "cmd.exe, parent powershell 5056 (the agent running mimikatz pth)",
                             ParentProcessId="5056", **{"Image~": "cmd.exe"})],
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
            W5, 5972, "credentials/mimikatz/sam (agent WE8XYD3K, powershell 5972)", "confirmed",
            [
                _lsass_unknown(5972, "lsass.exe opened from ntdll|KERNELBASE|UNKNOWN (token::elevate "
                               "/ lsadump::sam of the mapped mimikatz)"),
                _ev(10, "process enumeration (0x40 / 0x1400) of svchost/winlogon/... from "
                    "ntdll|KERNELBASE|UNKNOWN: mimikatz token::elevate looking for a SYSTEM token",
                    SourceProcessId="5972", **{"TargetImage~": "svchost", "CallTrace~": "UNKNOWN"}),
            ],
        )
    ],
    "other": [EMPIRE_AGENT, EMPIRE_TASKED],
    "must_not_label": [
        {"reason": "the svchost/lsass/winlogon/logonui/fontdrvhost instances opened by the agent "
         "(0x40 / 0x1400, token enumeration) are read, not injected", "n_events": 4500}
    ],
    "noise_notes": JIT_NOTE,
    "rationale": "Metadata SDWIN-190625103712: agent WE8XYD3K (powershell 5972) runs "
    "credentials/mimikatz/sam (Invoke-Mimikatz). ~4,500 process-access events from UNKNOWN "
    "frames directly after KERNELBASE are the mapped mimikatz.",
}
for _name, _pid, _meta, _mod in (
    ("empire_mimikatz_extract_keys.zip", 5972, "SDWIN-190518230752",
     "credentials/mimikatz/extract_tickets (agent WE8XYD3K, powershell 5972)"),
    ("empire_mimikatz_backupkeys_dcerpc_smb_lsarpc.zip", 4380, "SDWIN-190518235535",
     "credentials/mimikatz/command lsadump::backupkeys (agent ALYH6ZB2, powershell 4380)"),
    ("empire_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip", 7456, "SDWIN-190301174830",
     "credentials/mimikatz/dcsync (agent 1EHYPBVC, powershell 7456)"),
):
    DECISIONS[OTRF + "credential_access/host/" + _name] = {
        "malicious": [
            _mimikatz_agent(
                W5, _pid, _mod, "probable",
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
                _ev(3, "GruntHTTP.exe talks RPC (135 / dynamic port) to the DC: DsGetNCChanges",
                    **{"Image~": "GruntHTTP.exe"}),
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
                _ev(3, "GruntHTTP.exe LDAP (389) to the DC: the domain-group query",
                    **{"Image~": "GruntHTTP.exe"}),
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
    ("credential_access/host/empire_shell_rubeus_asktgt_createnetonly.zip", "rubeus",
     "Rubeus.exe (.NET executable on disk) started through the agent's shell"),
    ("credential_access/host/empire_shell_rubeus_asktgt_ptt.zip", "rubeus",
     "Rubeus.exe (.NET executable on disk) started through the agent's shell"),
):
    DECISIONS[OTRF + _name] = {
        "other": [EMPIRE_AGENT, EMPIRE_TASKED, {"cmd": _img, "reason": _why}],
        "noise_notes": JIT_NOTE + " Rubeus' own S10 with System.ni.dll|UNKNOWN is JIT code.",
    }
DECISIONS[OTRF + "persistence/host/proxylogon_ssrf_rce_poc.zip"] = {
    "noise_notes": "hostcontrollerservice.exe -> noderunner.exe and MSExchangeHMWorker -> netsh "
    "S10 with UNKNOWN frames are Exchange's own .NET (JIT) code opening its child processes.",
    "must_not_label": [
        {"reason": "Exchange .NET services (hostcontrollerservice.exe, msexchangehmworker.exe) "
         "opening their own children from JIT frames: managed code, not injection",
         "n_events": 49, "targets": {"noderunner.exe": 48, "netsh.exe": 1}}
    ],
    "rationale": "ProxyLogon SSRF + RCE proof of concept: an ASPX web shell written through "
    "Exchange and run by w3wp.exe. Script/web-shell execution, no code mapped in memory.",
}
for _name in (
    "collection/host/msf_record_mic.zip",
):
    pass
for _name, _why in (
    ("credential_access/host/cmd_dumping_ntds_dit_file_ntdsutil.zip", "ntdsutil IFM copy of ntds.dit"),
    ("credential_access/host/cmd_dumping_ntds_dit_file_volume_shadow_copy.zip",
     "vssadmin shadow copy of ntds.dit"),
    ("credential_access/host/rdp_interactive_taskmanager_lsass_dump.zip",
     "Task Manager 'Create dump file' of lsass over RDP"),
):
    DECISIONS[OTRF + _name] = {
        "noise_notes": "explorer.exe / ctfmon.exe / taskmgr.exe S10 with UNKNOWN frames between "
        "USER32 / shell frames are window-message callbacks of the interactive session (benign).",
        "rationale": f"{_why}: a LOLBin / GUI credential dump, no code mapped in memory.",
    }
for _name, _src, _why in (
    ("credential_access/host/psh_input_capture_promptforcreds.zip", "raccine",
     "PowerShell Get-Credential prompt"),
    ("credential_access/host/psh_lsass_memory_dump_comsvcs.zip", "rundll32",
     "rundll32 comsvcs.dll MiniDump of lsass started from PowerShell"),
    ("execution/host/psh_python_webserver.zip", "python", "python http.server started from PowerShell"),
):
    DECISIONS[OTRF + _name] = {
        "noise_notes": "powershell.exe S10 with UNKNOWN frames (System.ni.dll / "
        "System.Management.Automation.ni.dll around them) are PowerShell's JIT code starting "
        f"its child ({_src}).",
        "rationale": f"{_why}: script-level attack, no code mapped in memory.",
    }
