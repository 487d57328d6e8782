package runbooks

// maxLabel bounds a DNS-1123 label, e.g. a runbook name.
const maxLabel = 63

// isDNSLabel reports whether s is a DNS-1123 label: 1-63 lowercase letters, digits
// and '-', starting and ending with a letter or digit. Runbook names are labels.
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

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }
