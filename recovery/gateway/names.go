package gateway

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/recoverbot/recoverbot/runbooks"
)

// Blast-radius floors of a RATE_LIMIT target that is a CIDR prefix: one action
// must not limit a whole provider's or country's clients. A wider prefix needs
// the runbook's parameters.allowWidePrefix: true; a catch-all (/0, everyone)
// is never accepted.
const (
	widestIPv4 = 24
	widestIPv6 = 64
)

// serviceName is the rule for breaker services and routes: a DNS-1123
// subdomain, as the services they name are.
func serviceName(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 bytes", s)
	}
	for label := range strings.SplitSeq(s, ".") {
		if !dnsLabel(label) {
			return fmt.Errorf("%q is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 bytes)", s)
		}
	}
	return nil
}

func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1) {
			return false
		}
	}
	return true
}

// clientName is the rule for rate-limit targets: an IP address, a CIDR
// prefix, a client id or a route, 1-253 characters from A-Z a-z 0-9 . : _ / -,
// nothing a gateway would parse as syntax.
func clientName(s string) error {
	if len(s) > 253 || strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".:_/-", r))
	}) {
		return fmt.Errorf("%q must be 1-253 characters from A-Z a-z 0-9 . : _ / -", s)
	}
	return nil
}

// allowWide reads parameters.allowWidePrefix, which must be a literal boolean:
// a {{template}} renders to a string and is refused, so an event can never
// widen its own blast radius.
func allowWide(a runbooks.Action) (bool, error) {
	v, ok := a.Parameters["allowWidePrefix"]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("parameters.allowWidePrefix: a %T, want true or false", v)
	}
	return b, nil
}

// checkPrefix enforces the floors on a target that is a CIDR prefix; other
// targets (an address, a client id) name one client and pass. An IPv6 prefix
// that overlaps the IPv4-mapped range ::ffff:0:0/96 is judged as the IPv4
// prefix it covers (::ffff:0:0/96 is every IPv4 client).
func checkPrefix(s string, wide bool) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if addr, _, found := strings.Cut(s, "/"); found {
			if _, aerr := netip.ParseAddr(addr); aerr == nil {
				return fmt.Errorf("%q is not a valid CIDR prefix", s)
			}
		}
		return nil // not a prefix: one client
	}
	bits, floor, family := p.Bits(), widestIPv6, "IPv6"
	switch {
	case p.Addr().Is4():
		floor, family = widestIPv4, "IPv4"
	case p.Overlaps(ipv4Mapped):
		bits, floor, family = max(bits-96, 0), widestIPv4, "IPv4"
	}
	switch {
	case bits == 0:
		return fmt.Errorf("%q matches every client: a catch-all is never a rate-limit target", s)
	case bits < floor && !wide:
		return fmt.Errorf("%q is wider than /%d (%s): set parameters.allowWidePrefix: true in the runbook to allow it", s, floor, family)
	}
	return nil
}

var ipv4Mapped = netip.MustParsePrefix("::ffff:0:0/96")
