#!/usr/bin/env bash
# Cargo runner for the thumb targets: runs a firmware ELF under QEMU on the board that matches
# its target (taken from the ELF's path), with semihosting for output and the exit code.
# Set ZERONN_ICOUNT=/path/to/libicount.so to count instructions between the markers.
set -euo pipefail
elf=$1; shift
case "$elf" in
    *thumbv7em-none-eabihf*) board=(-machine mps2-an386 -cpu cortex-m4) ;;
    *thumbv7m-none-eabi*) board=(-machine mps2-an385 -cpu cortex-m3) ;;
    *thumbv8m.main-none-eabihf*)
        # The M33 (mps2-an505: code from 0x10000000) or, built with -C target-cpu=cortex-m55,
        # the M55 (mps3-an547: code from 0 in the ITCM): told apart by the ELF's entry point.
        entry=$(od -An -t u4 -j 24 -N 4 "$elf" | tr -d ' ')
        if [ "$entry" -lt $((0x10000000)) ]; then
            board=(-machine mps3-an547 -cpu cortex-m55)
        else
            board=(-machine mps2-an505 -cpu cortex-m33)
        fi ;;
    *) echo "run.sh: no board for $elf" >&2; exit 2 ;;
esac
qemu=${QEMU:-qemu-system-arm}
plugin=()
if [ -n "${ZERONN_ICOUNT:-}" ]; then
    plugin=(-icount shift=0 -d plugin -D "${ZERONN_ICOUNT_LOG:-/dev/stderr}" -plugin "$ZERONN_ICOUNT")
fi
exec timeout "${ZERONN_QEMU_TIMEOUT:-600}" "$qemu" "${board[@]}" -display none -monitor none -serial none \
    -semihosting-config enable=on,target=native "${plugin[@]}" -kernel "$elf" "$@" < /dev/null
