#!/bin/sh
# test_cli.sh - exercise every verb and exit code of the shmstore CLI.
#   sh test_cli.sh path/to/shmstore
# Works in a fresh directory under /dev/shm (removed at exit, even on failure), so
# nothing leaks and no other store is touched. Prints "N passed, N failed" last and
# exits 1 if anything failed.
set -u

BIN=${1:?usage: test_cli.sh path/to/shmstore}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
BASE=/dev/shm
[ -d "$BASE" ] && [ -w "$BASE" ] || BASE=${TMPDIR:-/tmp}
DIR=$(mktemp -d "$BASE/shmstore-cli-test.XXXXXX") || exit 1
loop=
cleanup() {
    [ -n "$loop" ] && kill "$loop" 2>/dev/null
    [ -f "$DIR/waiter.pid" ] && kill -9 "$(cat "$DIR/waiter.pid")" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
OUT=$DIR/out
ERR=$DIR/err
S=t$$
n_pass=0
n_fail=0

pass() { n_pass=$((n_pass + 1)); }
fail() {
    n_fail=$((n_fail + 1))
    echo "FAIL: $*"
    sed 's/^/  stdout: /' "$OUT" | head -n 10
    sed 's/^/  stderr: /' "$ERR" | head -n 10
}

# t CODE ARGS...: run shmstore --dir DIR ARGS, expect exit CODE.
t() {
    want=$1
    shift
    "$BIN" --dir "$DIR" "$@" >"$OUT" 2>"$ERR"
    got=$?
    if [ "$got" -eq "$want" ]; then pass; else fail "shmstore $* exited $got, expected $want"; fi
}
# out_has TEXT / err_has TEXT / out_is TEXT: check the last command's output.
out_has() { if grep -qF -- "$1" "$OUT"; then pass; else fail "stdout lacks '$1'"; fi; }
err_has() { if grep -qF -- "$1" "$ERR"; then pass; else fail "stderr lacks '$1'"; fi; }
out_is() { if [ "$(cat "$OUT")" = "$1" ]; then pass; else fail "stdout is not '$1'"; fi; }
out_empty() { if [ ! -s "$OUT" ]; then pass; else fail "stdout is not empty"; fi; }
# json_ok: the last stdout is one valid JSON document (when python3 is there).
json_ok() {
    if ! command -v python3 >/dev/null 2>&1; then pass; return; fi
    if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT" 2>/dev/null; then
        pass
    else
        fail "stdout is not valid JSON"
    fi
}

# ---- global options and usage ----------------------------------------------------------
t 0 --version;                 out_has "shmstore 0.1.0"
t 0 --help;                    out_has "Exit status"; out_has "124"
"$BIN" >"$OUT" 2>"$ERR";       [ $? -eq 64 ] && pass || fail "no verb: expected 64"
t 64 frobnicate;               err_has "not a verb"
t 0 help ls;                   out_has "Usage: shmstore ls"
t 0 help put;                  out_has "--same-layout"
t 64 help nosuchverb
for v in ls info cat create put wait rm gc check; do
    t 0 "$v" --help;           out_has "Usage: shmstore $v"
    t 64 "$v" --no-such-option; err_has "unknown option"
done
t 64 cat
t 64 create
t 64 create a/b
t 64 create "$S" --capacity 12Q
t 64 create "$S" --capacity
err_has "needs a value"
t 64 create "$S" --procs 0
t 64 wait "$S/x" --timeout -1
t 64 wait "$S/x" --after abc
t 64 cat "$S"
t 64 cat "/x"
t 64 put "$S/x"
t 64 put "$S/x" --str --file /dev/null

# ---- empty directory, missing stores ----------------------------------------------------
t 0 ls -s;                     out_empty
t 0 ls --json;                 json_ok
t 66 cat "$S/x";               err_has "no such store"
t 66 ls "$S"
t 66 info "$S"
t 66 rm "$S"
t 0 rm -f "$S"
t 66 gc "$S"
t 66 check "$S"
t 66 wait "$S/x" --timeout 0

# ---- create ------------------------------------------------------------------------------
t 0 create "$S" --capacity 64M
t 73 create "$S";              err_has "exists"
t 0 ls -s;                     out_is "$S"
t 0 ls;                        out_has "$S"; out_has "CAPACITY"
t 0 info "$S";                 out_has "64 MiB"
t 0 info --json "$S";          json_ok; out_has '"capacity": 67108864'

# ---- put and cat: scalars and strings ---------------------------------------------------
t 0 put "$S/i" 42;             t 0 cat "$S/i"; out_is "42"
t 0 put "$S/neg" -7;           t 0 cat "$S/neg"; out_is "-7"
t 0 put "$S/f" 1.5;            t 0 cat "$S/f"; out_is "1.5"
t 0 put "$S/nf" -2.25;         t 0 cat "$S/nf"; out_is "-2.25"
t 0 put "$S/e" 1e-3;           t 0 cat "$S/e"; out_is "0.001"
t 0 put "$S/s" "hello world";  t 0 cat "$S/s"; out_is "hello world"
t 0 put --str "$S/n" 42;       t 0 info "$S/n"; out_has "str"
t 0 put "$S/hex" 0x10;         t 0 info "$S/hex"; out_has "str"
t 0 put "$S/a/b/c" deep;       t 0 cat "$S/a/b/c"; out_is "deep"
t 0 put "$S/quote" 'say "hi"\'
t 0 info "$S/i";               out_has "int64"; out_has "version      1"
t 0 info --json "$S/f";        json_ok; out_has '"type": "float64"'
t 66 cat "$S/missing";         err_has "no such object"
t 66 info "$S/missing"
long=$(printf '%0300d' 0)
t 64 put "$S/$long" 1

# ---- put --same-layout, versions ---------------------------------------------------------
t 0 put --same-layout "$S/i" 43
t 65 put --same-layout "$S/i" text
t 0 cat "$S/i";                out_is "43"
t 0 info --json "$S/i";        out_has '"version": 2'

# ---- files: raw bytes and .npy ---------------------------------------------------------
printf 'raw\001bytes\n' >"$DIR/raw.bin"
t 0 put --file "$DIR/raw.bin" "$S/raw"
t 0 cat "$S/raw";              out_has 'b"raw\x01bytes\x0a"'
"$BIN" --dir "$DIR" cat --raw "$S/raw" >"$DIR/raw.out" 2>"$ERR"
cmp -s "$DIR/raw.bin" "$DIR/raw.out" && pass || fail "cat --raw differs from the file"
t 66 put --file "$DIR/no-such-file" "$S/raw"

# A version 1.0 .npy file: int32, shape (2, 3), values 0..5; header padded to 118 bytes.
npy_hdr() { # DESCR FORTRAN SHAPE
    h="{'descr': '$1', 'fortran_order': $2, 'shape': $3, }"
    printf '\223NUMPY\001\000\166\000%-117s\n' "$h"
}
{ npy_hdr '<i4' False '(2, 3)'
  printf '\000\000\000\000\001\000\000\000\002\000\000\000'
  printf '\003\000\000\000\004\000\000\000\005\000\000\000'; } >"$DIR/a.npy"
t 0 put --file "$DIR/a.npy" "$S/arr"
t 0 cat "$S/arr";              out_has "<i4"; out_has "(2, 3)"; out_has "min 0, max 5"
t 0 info --json "$S/arr";      json_ok; out_has '"shape": [2, 3]'
"$BIN" --dir "$DIR" cat --raw "$S/arr" >"$DIR/arr.out" 2>"$ERR"
tail -c 24 "$DIR/a.npy" | cmp -s - "$DIR/arr.out" && pass || fail "cat --raw of an array"
{ npy_hdr '<f8' False '(3,)'
  printf '\000\000\000\000\000\000\370\077\000\000\000\000\000\000\000\300'
  printf '\000\000\000\000\000\000\370\177'; } >"$DIR/f.npy"
t 0 put --file "$DIR/f.npy" "$S/farr"
t 0 cat "$S/farr";             out_has "1.5, -2.0, nan"; out_has "min -2.0, max 1.5"
if [ "$(uname -m)" = x86_64 ]; then # '<f16' (numpy float128): 80-bit extended, 16 bytes
    { npy_hdr '<f16' False '(2,)'
      printf '\000\000\000\000\000\000\000\300\377\077\000\000\000\000\000\000'
      printf '\000\000\000\000\000\000\000\200\000\300\000\000\000\000\000\000'; } >"$DIR/ld.npy"
    t 0 put --file "$DIR/ld.npy" "$S/ldarr"
    t 0 cat "$S/ldarr";        out_has "<f16"; out_has "1.5, -2.0"; out_has "min -2.0, max 1.5"
fi
{ npy_hdr '<i4' True '(2, 3)'; printf '%024d' 0; } >"$DIR/fortran.npy"
t 65 put --file "$DIR/fortran.npy" "$S/bad";  err_has "Fortran"
{ npy_hdr '<i4' False '(2, 4)'; printf '%024d' 0; } >"$DIR/short.npy"
t 65 put --file "$DIR/short.npy" "$S/bad"
printf 'not numpy' >"$DIR/fake.npy"
t 65 put --file "$DIR/fake.npy" "$S/bad"
t 66 cat "$S/bad"

# ---- ls of a store -----------------------------------------------------------------------
t 0 ls "$S";                   out_has "a/b/c"; out_has "array <i4 (2, 3)"; out_has "no other process"
t 0 ls -s "$S/a/";             out_is "a/b/c"
t 0 ls -s "$S";                out_has "a/b/c"
t 0 ls --json "$S";            json_ok; out_has '"name": "quote"'
t 0 ls --json;                 json_ok; out_has "\"name\": \"$S\""
t 0 ls -s --json "$S";         json_ok

# ---- wait ----------------------------------------------------------------------------------
t 124 wait --timeout 0.1 "$S/i"
t 0 wait --after 0 "$S/i";     out_is "2"
"$BIN" --dir "$DIR" put "$S/i" 44 &
t 0 wait --after 2 --timeout 20 "$S/i"; out_is "3"
wait

# ---- gc, check ---------------------------------------------------------------------------
t 0 gc "$S";                   out_has "freed"
t 0 check "$S";                out_has "consistent"

# ---- rm of objects ------------------------------------------------------------------------
t 0 rm "$S/i"
t 66 cat "$S/i"
t 66 rm "$S/i"
t 0 rm -f "$S/i"
t 0 rm "$S/s" "$S/f"
t 66 info "$S/s"

# ---- full store, corrupt store ---------------------------------------------------------
t 0 create "${S}small" --capacity 4M
head -c 8388608 /dev/zero >"$DIR/big.bin"
t 73 put --file "$DIR/big.bin" "${S}small/big"; err_has "hint"
t 66 cat "${S}small/big"  # a failed put leaves no empty value behind
t 0 check "${S}small"
t 0 create "${S}bad" --capacity 4M
printf 'XXXXXXXX' | dd of="$DIR/shmstore.${S}bad" bs=1 seek=0 conv=notrunc 2>/dev/null
t 1 check "${S}bad";           out_has "not consistent"
t 70 info "${S}bad";           err_has "shmstore check"
t 0 rm "${S}bad" "${S}small"

# ---- a full process table, and recovery after kill -9 -------------------------------------
t 0 create "${S}one" --procs 1
t 0 put "${S}one/x" 1
# A waiter holds the only slot. Its attach may collide with ours and fail (75): the loop
# then starts it again. The pid file names the current waiter (exec keeps the pid).
(
    while :; do
        sh -c 'echo $$ >"$1"; exec "$2" --dir "$3" wait --timeout 60 "$4"' _ \
            "$DIR/waiter.pid" "$BIN" "$DIR" "${S}one/x" >/dev/null 2>&1
        [ $? -eq 75 ] || break
    done
) &
loop=$!
i=0
got=0
while [ $i -lt 5000 ]; do  # until the waiter holds the slot (no sleep: each try is a process)
    "$BIN" --dir "$DIR" info "${S}one" >"$OUT" 2>"$ERR"
    got=$?
    [ $got -eq 75 ] && break
    i=$((i + 1))
done
if [ $got -eq 75 ]; then pass; else fail "full process table: exited $got, expected 75"; fi
err_has "shmstore gc ${S}one"
kill $loop 2>/dev/null
wait
loop=
pid=$(cat "$DIR/waiter.pid")
kill -9 "$pid" 2>/dev/null
i=0
# kill(2) returns before the process is gone: spin until it is (or is a zombie, whose
# locks the kernel has already dropped). The waiter is not our child: no `wait`.
while [ $i -lt 100000 ] && kill -0 "$pid" 2>/dev/null; do
    case $(cat "/proc/$pid/stat" 2>/dev/null) in *") Z "*) break ;; esac
    i=$((i + 1))
done
rm -f "$DIR/waiter.pid"
t 0 info "${S}one"             # attaching reclaimed the dead waiter's slot
t 0 check "${S}one";           out_has "consistent"
t 0 rm "${S}one"

# ---- demo --json: one JSON document, every frame verified -----------------------------------
t 0 demo --seconds 1 --readers 1 --json; json_ok; out_has '"torn":0,"mismatched":0'
t 64 demo --seconds 0

# ---- directory from the environment and from a verb option -------------------------------
SHMSTORE_DIR=$DIR "$BIN" ls -s >"$OUT" 2>"$ERR" && pass || fail "SHMSTORE_DIR ls"
out_is "$S"
"$BIN" ls -s --dir "$DIR" >"$OUT" 2>"$ERR" && pass || fail "ls --dir"
out_is "$S"

# ---- rm of the store ----------------------------------------------------------------------
t 0 rm "$S"
t 66 rm "$S"
t 0 ls -s;                     out_empty

echo "$n_pass passed, $n_fail failed"
[ "$n_fail" -eq 0 ]
