# Sourced by images/build-curl.sh and images/build-openssl.sh: debsrc_init WORK makes a private
# apt configuration under WORK/apt listing Debian's source suites (main, updates, security), so
# the machine's own apt configuration is left alone, sets aptopts for apt-get and apt-cache, and
# refreshes its lists (a suite that cannot be had is skipped).
# shellcheck shell=bash
debsrc_init() {
	mkdir -p "$1/apt/lists/partial"
	# shellcheck source=/dev/null
	. /etc/os-release
	cat >"$1/apt/src.sources" <<-SRC
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: $VERSION_CODENAME $VERSION_CODENAME-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb-src
		URIs: http://deb.debian.org/debian-security
		Suites: $VERSION_CODENAME-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	SRC
	aptopts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$1/apt"
		-o "Dir::State::Lists=$1/apt/lists" -o APT::Sandbox::User=root)
	apt-get "${aptopts[@]}" update -qq >&2 || true
}
