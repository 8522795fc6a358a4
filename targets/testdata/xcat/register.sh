#!/bin/sh
# Written by fgimg: registers this xcat target on the xCAT management node with
# xCAT's (and Moab's) own commands, the same steps as register.json.
# fgimg register performs them idempotently and keeps the older osimage; this script replaces it.
set -eu
cd "$(dirname "$0")"
echo 'ROOTIMG  netboot/debian12/x86_64/hpc/rootimg.cpio.gz' | sha256sum -c --quiet -
echo 'KERNEL  netboot/debian12/x86_64/hpc/kernel' | sha256sum -c --quiet -
# One bare-metal registration at a time, as with fgimg register.
exec 9>"${FGIMG_BAREMETAL_LOCK:-/run/lock/fgimg-baremetal.lock}"
flock 9
PATH=$PATH:/opt/xcat/bin:/opt/xcat/sbin
rootimgdir=/install/netboot/debian12/x86_64/hpc
mkdir -p "$rootimgdir"
install -m 0644 netboot/debian12/x86_64/hpc/kernel "$rootimgdir/kernel"
install -m 0644 netboot/debian12/x86_64/hpc/rootimg.cpio.gz "$rootimgdir/rootimg.cpio.gz"
# The packed image is the initrd too: the kernel unpacks the whole root into RAM.
ln -f "$rootimgdir/rootimg.cpio.gz" "$rootimgdir/initrd-stateless.gz"
if lsdef -t osimage -o hpc >/dev/null 2>&1; then
	sed -n 's/^    //p' osimage.stanza | grep -v '^objtype=' | tr '\n' '\0' | xargs -0 chdef -t osimage -o hpc
else
	mkdef -z <osimage.stanza
fi

# Moab: the osimage in the provisioning OS list (OSLIST) of each NODECFG, then
# the scheduler recycled to read it.
moabcfg=${MOABHOMEDIR:-/opt/moab}/etc/moab.cfg
[ -f "$moabcfg" ] || moabcfg=${MOABHOMEDIR:-/opt/moab}/moab.cfg
if grep -Eq '^[[:space:]]*NODECFG\[DEFAULT\][[:space:]].*OSLIST=' "$moabcfg"; then
	grep -Eq '^[[:space:]]*NODECFG\[DEFAULT\][[:space:]].*OSLIST=([^[:space:]]*,)?hpc(,|[[:space:]]|$)' "$moabcfg" ||
		sed -i -E '/^[[:space:]]*NODECFG\[DEFAULT\][[:space:]].*OSLIST=/s/OSLIST=([^[:space:]]*)/OSLIST=\1,hpc/' "$moabcfg"
else
	echo 'NODECFG[DEFAULT] OSLIST=hpc' >>"$moabcfg"
fi
if grep -Eq '^[[:space:]]*NODECFG\[node01\][[:space:]].*OSLIST=' "$moabcfg"; then
	grep -Eq '^[[:space:]]*NODECFG\[node01\][[:space:]].*OSLIST=([^[:space:]]*,)?hpc(,|[[:space:]]|$)' "$moabcfg" ||
		sed -i -E '/^[[:space:]]*NODECFG\[node01\][[:space:]].*OSLIST=/s/OSLIST=([^[:space:]]*)/OSLIST=\1,hpc/' "$moabcfg"
else
	echo 'NODECFG[node01] OSLIST=hpc' >>"$moabcfg"
fi
PATH=$PATH:/opt/moab/bin:/opt/moab/sbin mschedctl -R
