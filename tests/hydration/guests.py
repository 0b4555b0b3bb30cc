"""Synthetic Linux guests per distribution family, with fake guest tools run by busybox.

The fake tools behave like the real ones where the toolkit depends on it: dracut and
update-initramfs write a new initrd with the Hyper-V modules they were asked for, the package
tools record (un)installs, so the chroot plumbing is exercised without a full distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.hydration.images import Exe, Symlink, Tree, make_initrd

BUSYBOX = "/usr/bin/busybox"
APPLETS = (
    "sh",
    "cat",
    "cp",
    "mkdir",
    "rm",
    "find",
    "cpio",
    "gzip",
    "ln",
    "touch",
    "echo",
    "ls",
    "grep",
    "sed",
    "mv",
    "dirname",
    "basename",
    "sort",
    "tr",
    "xargs",
    "true",
    "false",
    "test",
    "[",
)

_PACK = r"""
pack() {  # pack OUT KVER MODULES...: a gzip newc initrd holding the named modules of KVER
  out=$1; kver=$2; shift 2
  tmp=/tmp/fakeinitrd.$$
  rm -rf $tmp; mkdir -p $tmp/usr/lib/modules/$kver
  echo '#!/bin/sh' > $tmp/init
  for m in "$@"; do
    f=$(find /lib/modules/$kver -name "$m.ko*" | head -n 1)
    [ -n "$f" ] || continue
    d=$tmp/usr/lib/modules/$kver/$(dirname ${f#/lib/modules/$kver/})
    mkdir -p $d; cp $f $d/
  done
  (cd $tmp && find . | cpio -o -H newc 2>/dev/null) | gzip > "$out"
  rm -rf $tmp
}
"""

FAKE_DRACUT = (
    "#!/bin/sh\n"
    + _PACK
    + r"""
echo "dracut $*" >> /var/log/fake-tools.log
drivers=""; pos=""
while [ $# -gt 0 ]; do
  case "$1" in
    --add-drivers) drivers="$drivers $2"; shift 2;;
    --help) echo "--no-hostonly --add-drivers"; exit 0;;
    -*) shift;;
    *) pos="$pos $1"; shift;;
  esac
done
set -- $pos
conf=$(cat /etc/dracut.conf.d/*.conf 2>/dev/null | sed -n 's/^add_drivers+="\(.*\)"/\1/p')
pack "$1" "$2" ata_piix $drivers $conf
"""
)

FAKE_UPDATE_INITRAMFS = (
    "#!/bin/sh\n"
    + _PACK
    + r"""
echo "update-initramfs $*" >> /var/log/fake-tools.log
kver=""
while [ $# -gt 0 ]; do case "$1" in -k) kver=$2; shift 2;; *) shift;; esac; done
mods=$(grep -v '^#' /etc/initramfs-tools/modules 2>/dev/null)
pack /boot/initrd.img-$kver $kver ata_piix $mods
"""
)

FAKE_PKG = r"""#!/bin/sh
echo "$(basename $0) $*" >> /var/log/fake-tools.log
case "$*" in
  *NetworkManager*|*network-manager*) rm -f /usr/sbin/NetworkManager ;;
  *install*|*-i\ *|*-Uvh*) mkdir -p /usr/sbin; echo '#!/bin/sh' > /usr/sbin/waagent; chmod 755 /usr/sbin/waagent;
     mkdir -p /lib/systemd/system; touch /lib/systemd/system/__SERVICE__.service ;;
esac
exit 0
"""

FAKE_SYSTEMCTL = r"""#!/bin/sh
echo "systemctl $*" >> /var/log/fake-tools.log
if [ "$1" = enable ]; then
  mkdir -p /etc/systemd/system/multi-user.target.wants
  ln -sf /lib/systemd/system/$2 /etc/systemd/system/multi-user.target.wants/$2
fi
"""

KO = b"\x7fELF fake kernel module"


@dataclass
class GuestSpec:
    distro: str  # rhel, centos, ol, rocky, almalinux, sles, ubuntu, debian
    version: str
    kernels: tuple[str, ...] = ("5.14.0-1",)
    hv_in_initrd: bool = False
    compression: str = "gzip"
    early_microcode: bool = False
    network_manager: bool = False
    agent_installed: bool = False
    grub_legacy: bool = False
    bls: bool = False


def busybox_tree() -> Tree:
    with open(BUSYBOX, "rb") as f:
        tree: Tree = {"/bin/busybox": Exe(f.read())}
    for applet in APPLETS:
        tree[f"/bin/{applet}"] = Symlink("busybox")
    for d in ("/dev", "/proc", "/sys", "/run", "/tmp", "/var/log", "/root"):
        tree[d] = None
    return tree


def release_files(spec: GuestSpec) -> Tree:
    d, v = spec.distro, spec.version
    major = v.split(".")[0]
    if d in ("rhel", "centos", "rocky", "almalinux", "ol"):
        name = {
            "rhel": f"Red Hat Enterprise Linux Server release {v} (Maipo)",
            "centos": f"CentOS Linux release {v}.2009 (Core)",
            "rocky": f"Rocky Linux release {v} (Blue Onyx)",
            "almalinux": f"AlmaLinux release {v} (Turquoise Kodkod)",
            "ol": f"Red Hat Enterprise Linux Server release {v} (Maipo)",
        }[d]
        tree: Tree = {"/etc/redhat-release": name + "\n"}
        if d == "ol":
            tree["/etc/oracle-release"] = f"Oracle Linux Server release {v}\n"
        if int(major) >= 7:
            tree["/etc/os-release"] = f'ID="{d}"\nVERSION_ID="{v}"\nPRETTY_NAME="{name}"\n'
        return tree
    if d == "sles":
        sp = v.split(".")[1] if "." in v else "0"
        tree = {
            "/etc/os-release": f'NAME="SLES"\nVERSION="{major}-SP{sp}"\nVERSION_ID="{v}"\nID="sles"\n'
            f'PRETTY_NAME="SUSE Linux Enterprise Server {major} SP{sp}"\n'
        }
        if major == "12":
            tree["/etc/SuSE-release"] = (
                f"SUSE Linux Enterprise Server {major} (x86_64)\nVERSION = {major}\nPATCHLEVEL = {sp}\n"
            )
        return tree
    if d == "ubuntu":
        return {
            "/etc/lsb-release": f"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={v}\nDISTRIB_CODENAME=x\n"
            f'DISTRIB_DESCRIPTION="Ubuntu {v} LTS"\n',
            "/etc/debian_version": "bullseye/sid\n",
            "/etc/os-release": f'ID=ubuntu\nVERSION_ID="{v}"\n',
        }
    if d == "debian":
        return {"/etc/debian_version": f"{v}\n", "/etc/os-release": f'ID=debian\nVERSION_ID="{major}"\n'}
    return {"/etc/os-release": f'ID={d}\nVERSION_ID="{v}"\nPRETTY_NAME="{d} {v}"\n'}


def family_of(distro: str) -> str:
    if distro in ("rhel", "centos", "rocky", "almalinux", "ol"):
        return "redhat"
    if distro == "sles":
        return "suse"
    return distro


def initrd_name(spec: GuestSpec, kernel: str) -> str:
    fam = family_of(spec.distro)
    return {"redhat": f"/boot/initramfs-{kernel}.img", "suse": f"/boot/initrd-{kernel}"}.get(
        fam, f"/boot/initrd.img-{kernel}"
    )


def boot_tree(spec: GuestSpec, root_spec: str, prefix: str = "/boot") -> Tree:
    """Kernels, initrds and bootloader config; prefix is "" when /boot is its own partition."""
    tree: Tree = {}
    for k in spec.kernels:
        tree[f"{prefix}/vmlinuz-{k}"] = b"kernel"
        name = initrd_name(spec, k).replace("/boot", prefix, 1)
        tree[name] = make_initrd(k, spec.hv_in_initrd, spec.compression, spec.early_microcode)
    cmd = f"root={root_spec} ro crashkernel=auto rhgb quiet"
    fam = family_of(spec.distro)
    if spec.grub_legacy:
        entries = "".join(
            f"title Linux ({k})\n\troot (hd0,0)\n\tkernel /vmlinuz-{k} {cmd}\n\tinitrd /initramfs-{k}.img\n"
            for k in spec.kernels
        )
        tree[f"{prefix}/grub/grub.conf"] = f"default=0\ntimeout=5\n{entries}"
        tree[f"{prefix}/grub/menu.lst"] = Symlink("./grub.conf")
    elif spec.bls:
        tree[f"{prefix}/grub2/grub.cfg"] = "set default=0\nblscfg\n"
        tree[f"{prefix}/grub2/grubenv"] = _grubenv(f"saved_entry=x\nkernelopts={cmd}\n")
        for k in spec.kernels:
            tree[f"{prefix}/loader/entries/abc-{k}.conf"] = (
                f"title Linux {k}\nversion {k}\nlinux /vmlinuz-{k}\ninitrd /initramfs-{k}.img\n"
                "options $kernelopts\n"
            )
    else:
        grubdir = "grub2" if fam in ("redhat", "suse") else "grub"
        entries = "".join(
            f"menuentry 'Linux {k}' {{\n\tlinux\t/vmlinuz-{k} {cmd}\n\tinitrd\t/{initrd_name(spec, k)[6:]}\n}}\n"
            for k in spec.kernels
        )
        tree[f"{prefix}/{grubdir}/grub.cfg"] = f"set timeout=5\n{entries}"
    return tree


def _grubenv(body: str) -> bytes:
    text = "# GRUB Environment Block\n" + body
    return text.encode() + b"#" * (1024 - len(text))


def root_tree(spec: GuestSpec, fstab: str) -> Tree:
    fam = family_of(spec.distro)
    tree: Tree = {**busybox_tree(), **release_files(spec), "/etc/fstab": fstab}
    for k in spec.kernels:
        base = f"/lib/modules/{k}"
        tree[f"{base}/modules.builtin"] = "kernel/drivers/block/loop.ko\n"
        tree[f"{base}/modules.dep"] = ""
        tree[f"{base}/kernel/drivers/ata/ata_piix.ko.xz"] = KO
        tree[f"{base}/kernel/drivers/hv/hv_vmbus.ko.xz"] = KO
        tree[f"{base}/kernel/drivers/scsi/hv_storvsc.ko.xz"] = KO
        tree[f"{base}/kernel/drivers/net/hyperv/hv_netvsc.ko.xz"] = KO
    if spec.grub_legacy:
        pass
    else:
        tree["/etc/default/grub"] = (
            'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="crashkernel=auto rd.lvm.lv=vg/root rhgb quiet"\n'
            if fam in ("redhat", "suse")
            else 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX=""\n'
        )
    if spec.distro == "ubuntu":
        tree["/etc/default/grub.d/50-cloudimg-settings.cfg"] = (
            'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 quiet"\n'
        )
    if fam == "redhat" and int(spec.version.split(".")[0]) >= 9:
        tree["/etc/kernel/cmdline"] = "root=UUID=x ro crashkernel=auto rhgb quiet\n"
    tree["/etc/udev/rules.d/70-persistent-net.rules"] = (
        'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="00:50:56:aa:bb:cc", NAME="eth0"\n'
    )
    service = "walinuxagent" if spec.distro == "ubuntu" else "waagent"
    pkg = FAKE_PKG.replace("__SERVICE__", service)
    tree["/usr/bin/systemctl"] = Exe(FAKE_SYSTEMCTL)
    if fam == "redhat":
        tree["/usr/bin/dracut"] = Exe(FAKE_DRACUT)
        tree["/usr/bin/rpm"] = Exe(pkg)
        tree["/usr/bin/yum"] = Exe(pkg)
        tree["/etc/sysconfig/network"] = "NETWORKING=yes\nHOSTNAME=onprem-web01\nGATEWAY=10.0.0.1\n"
        tree["/etc/sysconfig/network-scripts/ifcfg-ens192"] = (
            "DEVICE=ens192\nBOOTPROTO=static\nIPADDR=10.0.0.5\nNETMASK=255.255.255.0\nONBOOT=yes\n"
        )
        tree["/etc/sysconfig/network-scripts/ifcfg-lo"] = "DEVICE=lo\nIPADDR=127.0.0.1\n"
        tree["/lib/udev/rules.d/75-persistent-net-generator.rules"] = "# generator\n"
    elif fam == "suse":
        tree["/usr/bin/dracut"] = Exe(FAKE_DRACUT)
        tree["/usr/bin/rpm"] = Exe(pkg)
        tree["/usr/bin/zypper"] = Exe(pkg)
        tree["/etc/sysconfig/network/ifcfg-eth1"] = (
            "BOOTPROTO='static'\nIPADDR='10.0.0.6/24'\nSTARTMODE='auto'\n"
        )
        tree["/etc/sysconfig/network/config"] = "NETCONFIG_DNS_POLICY='auto'\n"
    else:
        tree["/usr/sbin/update-initramfs"] = Exe(FAKE_UPDATE_INITRAMFS)
        tree["/usr/bin/dpkg"] = Exe(pkg)
        tree["/usr/bin/apt-get"] = Exe(pkg)
        tree["/etc/initramfs-tools/modules"] = "# List of modules\n"
        if spec.distro == "ubuntu" and spec.version >= "18":
            tree["/usr/sbin/netplan"] = Exe("#!/bin/sh\n")
            tree["/etc/netplan/01-netcfg.yaml"] = (
                "network:\n  version: 2\n  ethernets:\n    ens160:\n      addresses: [10.0.0.7/24]\n"
            )
        else:
            tree["/etc/network/interfaces"] = (
                "auto lo\niface lo inet loopback\n\nauto ens192\niface ens192 inet static\n"
                "  address 10.0.0.8/24\n  gateway 10.0.0.1\n\nsource /etc/network/interfaces.d/*\n"
            )
    if spec.network_manager:
        tree["/usr/sbin/NetworkManager"] = Exe("#!/bin/sh\n")
    if spec.agent_installed:
        tree["/usr/sbin/waagent"] = Exe("#!/bin/sh\n")
    return tree
