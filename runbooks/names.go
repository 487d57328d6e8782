package runbooks

// Name and value checks shared by the loader (literal values, at start-up) and
// Render (every rendered value). They are hand-written rather than regexps so the
// render path does not allocate and the rules read as the Kubernetes docs state them.

import "strings"

const (
	maxLabel     = 63  // DNS-1123 label, e.g. a namespace or a runbook name
	maxSubdomain = 253 // DNS-1123 subdomain, e.g. a deployment or service name
	maxValue     = 253 // a substituted template value; no field we render needs more
)

// isDNSLabel reports whether s is a DNS-1123 label: 1-63 lowercase letters, digits
// and '-', starting and ending with a letter or digit.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > maxLabel {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isLowerAlnum(c):
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// isDNSSubdomain reports whether s is a DNS-1123 subdomain: dot-separated labels,
// at most 253 bytes in all. Kubernetes names deployments and services this way.
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > maxSubdomain {
		return false
	}
	for len(s) > 0 {
		label, rest, found := strings.Cut(s, ".")
		if !isDNSLabel(label) || (found && rest == "") {
			return false
		}
		s = rest
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// isRateLimitTarget reports whether s matches ^[A-Za-z0-9.:_/-]{1,253}$: an IP
// address, a CIDR, a client id or a route, nothing a gateway admin API would parse
// as syntax.
func isRateLimitTarget(s string) bool {
	if len(s) == 0 || len(s) > maxSubdomain {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune(".:_/-", rune(c)) {
			return false
		}
	}
	return true
}

// cachePatternProblem explains why a CACHE_CLEAR pattern is refused, or returns "".
// A pattern must be printable ASCII without spaces, and the literal text before its
// first glob character must hold a letter or digit: "*" or ":*" would clear every
// key (the reference playbook produced ":*" from an unresolved "{{route}}:*").
func cachePatternProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return "must be printable ASCII without spaces"
		}
	}
	prefix := s
	if i := strings.IndexAny(s, `*?[\`); i >= 0 {
		prefix = s[:i]
	}
	for i := 0; i < len(prefix); i++ {
		if isAlnum(prefix[i]) {
			return ""
		}
	}
	return "needs a literal prefix with a letter or digit before its first wildcard (it would clear every key)"
}

// unsafeValueProblem explains why a value substituted into a template is refused,
// or returns "". The rules are deliberately narrower than any one field needs: event
// data comes from outside, and a value that passes here cannot change the meaning of
// a glob, a shell word, a JSON or PromQL string, or a path.
func unsafeValueProblem(s string) string {
	if len(s) > maxValue {
		return "is longer than 253 bytes"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			return "contains whitespace"
		case c >= 0x80:
			return "contains non-ASCII bytes (look-alike letters are refused)"
		case c < 0x20 || c == 0x7f:
			return "contains a control character"
		case strings.IndexByte(unsafeChars, c) >= 0:
			return "contains the character " + quoteByte(c) + " which is not allowed in a substituted value"
		}
	}
	if strings.Contains(s, "..") {
		return `contains ".."`
	}
	return ""
}

// unsafeChars are glob, quoting, shell and template characters.
const unsafeChars = "*?[]{}\\`'\"$;|&<>"

func quoteByte(c byte) string { return "'" + string(rune(c)) + "'" }
