package runbooks

import "strings"

// The template safety rules: what a {{variable}} may render to, whatever field it
// is in. They are deliberately narrower than any one field needs: event data comes
// from outside, and a value that passes here cannot change the meaning of a glob,
// a shell word, a JSON or PromQL string, or a path. What a field may hold for its
// action type (a deployment name, a cache pattern, a rate-limit target) is the
// rule of the driver that acts on it, which checks literal values at start-up and
// rendered ones at plan time.

// maxValue bounds a substituted template value; no field we render needs more.
const maxValue = 253

// unsafeValueProblem explains why a value substituted into a template is refused,
// or returns "".
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

// truncate shortens a value quoted in an error message; event data may be large.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
