"""Distribution differences as data: one row per family, looked up by distribution id."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Family:
    name: str
    # Initrd tools in order of preference; the first one the guest has is used.
    initrd_tools: tuple[str, ...]
    # Initrd file names per kernel version, first match wins.
    initrd_names: tuple[str, ...]
    # Generated bootloader configs whose kernel lines are edited in place.
    grub_configs: tuple[str, ...]
    grub_mkconfig: str
    default_network_stack: str
    package_manager: str  # "rpm", "zypper" or "apt"
    package_ext: str  # bundled agent package format
    agent_packages: tuple[str, ...]  # names in the distribution's own repositories
    agent_services: tuple[str, ...]
    # NetworkManager is removed (Azure's preparation: RHEL and Ubuntu) up to this major version; None: never.
    remove_network_manager_up_to: int | None
    network_manager_package: str
    # Keys Azure's preparation writes to the eth0 configuration, in order.
    eth0_config: str
    sysconfig_network: str | None


_GRUB_CONFIGS = (
    "/boot/grub2/grub.cfg",
    "/boot/grub/grub.cfg",
    "/boot/grub/menu.lst",
    "/boot/grub/grub.conf",
)

REDHAT = Family(
    name="redhat",
    initrd_tools=("dracut", "mkinitrd"),
    initrd_names=("/boot/initramfs-{k}.img", "/boot/initrd-{k}.img", "/boot/initrd-{k}"),
    grub_configs=_GRUB_CONFIGS,
    grub_mkconfig="grub2-mkconfig",
    default_network_stack="ifcfg-rh",
    package_manager="rpm",
    package_ext=".rpm",
    agent_packages=("WALinuxAgent",),
    agent_services=("waagent",),
    # RHEL 8 and later have no network-scripts: NetworkManager is the only network stack left.
    remove_network_manager_up_to=7,
    network_manager_package="NetworkManager",
    eth0_config=(
        "DEVICE=eth0\nONBOOT=yes\nBOOTPROTO=dhcp\nTYPE=Ethernet\nUSERCTL=no\nPEERDNS=yes\n"
        "IPV6INIT=no\nPERSISTENT_DHCLIENT=yes\nNM_CONTROLLED=yes\n"
    ),
    sysconfig_network="NETWORKING=yes\nHOSTNAME=localhost.localdomain\n",
)

SUSE = Family(
    name="suse",
    initrd_tools=("dracut", "mkinitrd"),
    initrd_names=("/boot/initrd-{k}", "/boot/initrd-{k}.img", "/boot/initramfs-{k}.img"),
    grub_configs=_GRUB_CONFIGS,
    grub_mkconfig="grub2-mkconfig",
    default_network_stack="ifcfg-suse",
    package_manager="zypper",
    package_ext=".rpm",
    agent_packages=("python-azure-agent",),
    agent_services=("waagent",),
    remove_network_manager_up_to=None,
    network_manager_package="NetworkManager",
    eth0_config="BOOTPROTO='dhcp'\nSTARTMODE='auto'\nUSERCONTROL='no'\nDHCLIENT_SET_HOSTNAME='no'\n",
    # On SUSE /etc/sysconfig/network is a directory of wicked settings, not the RHEL file.
    sysconfig_network=None,
)

DEBIAN = Family(
    name="debian",
    initrd_tools=("update-initramfs", "dracut"),
    initrd_names=("/boot/initrd.img-{k}", "/boot/initramfs-{k}.img", "/boot/initrd-{k}"),
    grub_configs=_GRUB_CONFIGS,
    grub_mkconfig="grub-mkconfig",
    default_network_stack="ifupdown",
    package_manager="apt",
    package_ext=".deb",
    agent_packages=("waagent",),
    agent_services=("walinuxagent", "waagent"),
    remove_network_manager_up_to=None,
    network_manager_package="network-manager",
    eth0_config="auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n",
    sysconfig_network=None,
)

UBUNTU = replace(
    DEBIAN,
    name="ubuntu",
    default_network_stack="netplan",
    agent_packages=("walinuxagent",),
    agent_services=("walinuxagent",),
    remove_network_manager_up_to=99,
)

BY_DISTRO: dict[str, Family] = {
    "rhel": REDHAT,
    "centos": REDHAT,
    "ol": REDHAT,
    "rocky": REDHAT,
    "almalinux": REDHAT,
    "sles": SUSE,
    "opensuse-leap": SUSE,
    "debian": DEBIAN,
    "ubuntu": UBUNTU,
}

NETPLAN_ETH0 = "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
