# For the image builders in tests/kind: an image carries, in a label, a
# digest of everything it was built from; it is rebuilt only when that
# digest changes (or MILLRACE_KIND_REBUILD=1), so `make kind` reuses images
# that are up to date and never runs on stale ones.
# shellcheck shell=bash
INPUTS_LABEL=io.millrace.kind.inputs

# inputs_digest ARG...: a short sha256 over each ARG: a file's contents, every
# file under a directory (by relative path), or, for =TEXT, the text itself.
# Paths are named relative to their argument so the digest does not depend on
# where the repository is checked out.
inputs_digest() {
  local a
  for a in "$@"; do
    if [[ $a == =* ]]; then
      printf 'text %s\n' "${a#=}"
    elif [[ -d $a ]]; then
      (cd "$a" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    else
      printf '%s %s\n' "$(sha256sum <"$a" | cut -d' ' -f1)" "$(basename "$a")"
    fi
  done | sha256sum | cut -c1-16
}

# image_is_current IMAGE DIGEST: IMAGE exists and was built from DIGEST.
image_is_current() {
  [[ -z "${MILLRACE_KIND_REBUILD:-}" ]] || return 1
  [[ "$(podman image inspect -f "{{index .Labels \"$INPUTS_LABEL\"}}" "$1" 2>/dev/null)" == "$2" ]]
}

# jre_rootfs: the Debian bookworm rootfs with openjdk-17-jre-headless that
# the Kafka and Schema Registry images start from (debootstrap, made once
# into $MILLRACE_KIND_CACHE/rootfs/jre); its path on stdout.
jre_rootfs() {
  local jre="$MILLRACE_KIND_CACHE/rootfs/jre"
  if [[ ! -x "$jre/usr/bin/java" ]]; then
    rm -rf "$jre"
    nice -n 10 debootstrap --variant=minbase --include=openjdk-17-jre-headless,ca-certificates,bash \
      bookworm "$jre" http://deb.debian.org/debian >&2
    rm -rf "$jre"/var/cache/apt/archives/*.deb "$jre"/var/lib/apt/lists/*
  fi
  echo "$jre"
}
