package runbooks_test

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/runbooks"
)

// FuzzRender puts random values in every variable the default runbooks use, as
// strings, numbers, booleans, null, maps or lists, in data or context, and
// renders each default runbook: either a plan whose every substituted value is
// safe by an oracle written apart from the package's own checks, or a
// *RenderError that says which action and field, and why. Plain DNS names
// must render (no refusal without a cause).
//
// shape picks, per variable (two bits each, in the order upstream, route,
// client, backup_service), what the event carries: 0 the string (a for
// backup_service b), 1 the number, 2 a boolean or null (bit 8), 3 a map or a
// list (bit 9); bit 10 moves every value from context to data.
func FuzzRender(f *testing.F) {
	for _, s := range []struct {
		a, b  string
		n     float64
		shape uint16
	}{
		{"payments", "payments-dr", 0, 0},
		{"payments", "payments", 0, 0},
		{"/api/users", "x", 0, 0},
		{"10.1.2.3", "10.1.2.4", 0, 1 << 10},
		{"*", "?", 0, 0}, {"[a-z]", "../", 0, 0}, {"a b", "a\nb", 0, 0}, {"a\x00b", "\x1b[31m", 0, 0},
		{"\u0430pi", "p\u0430yments", 0, 0}, {"{{route}}", "{{upstream}}", 0, 0}, {"$(id)", "a;b", 0, 0},
		{strings.Repeat("a", 10240), strings.Repeat("b", 254), 0, 0}, {strings.Repeat("a", 253), "x", 0, 0},
		{"", "", 0, 0}, {"a..b", ".", 0, 0}, {"A", "-a", 0, 0},
		{"x", "y", 12.5, 0b01010101}, {"x", "y", 1e21, 0b01}, {"x", "y", math.NaN(), 0b0101}, {"x", "y", math.Inf(-1), 0b01},
		{"x", "y", math.Copysign(0, -1), 0b01}, {"x", "y", 1e-7, 0b0100}, {"x", "y", 0, 0b10101010}, {"x", "y", 0, 0b10101010 | 1<<8},
		{"x", "y", 0, 0b11111111}, {"x", "y", 0, 0b11111111 | 1<<9},
	} {
		f.Add(s.a, s.b, s.n, s.shape)
	}
	set, err := runbooks.LoadDefaults()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string, n float64, shape uint16) {
		e := &runbooks.Event{Type: runbooks.ErrorRateSpike, Severity: runbooks.Critical, Confidence: 1,
			Data: map[string]any{}, Context: map[string]any{}}
		where := e.Context
		if shape&(1<<10) != 0 {
			where = e.Data
		}
		vars := []string{"upstream", "route", "client", "backup_service"}
		allPlain := true
		for i, v := range vars {
			s := a
			if v == "backup_service" {
				s = b
			}
			switch (shape >> (2 * i)) & 3 {
			case 0:
				where[v] = s
				allPlain = allPlain && plainName.MatchString(s)
			case 1:
				where[v] = n
				allPlain = false
			case 2:
				where[v] = true
				if shape&(1<<8) != 0 {
					where[v] = nil
				}
				allPlain = false
			case 3:
				where[v] = map[string]any{"k": s}
				if shape&(1<<9) != 0 {
					where[v] = []any{s}
				}
				allPlain = false
			}
		}
		allPlain = allPlain && a != b
		for _, rb := range set.All() {
			actions, err := runbooks.Render(rb, e)
			if err != nil {
				var re *runbooks.RenderError
				if !errors.As(err, &re) || re.Reason == "" || re.Field == "" || re.Action < 0 || re.Action >= len(rb.Actions) {
					t.Fatalf("%s with %v: error %T %#v: want a *RenderError naming an action, a field and a reason", rb.Name, e.Context, err, err)
				}
				if allPlain {
					t.Fatalf("%s refused plain names a=%q b=%q: %v", rb.Name, a, b, err)
				}
				continue
			}
			if len(actions) != len(rb.Actions) {
				t.Fatalf("%s: %d actions rendered from %d", rb.Name, len(actions), len(rb.Actions))
			}
			for i := range actions {
				if p := unsafeRendered(&rb.Actions[i], &actions[i]); p != "" {
					t.Fatalf("%s with data %v context %v: rendered %s", rb.Name, e.Data, e.Context, p)
				}
			}
		}
	})
}

// plainName is a DNS-1123 label: valid wherever the default runbooks put a
// variable (service, cache pattern prefix, rate-limit target, failover ends).
var plainName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// unsafeRendered compares a rendered action with its template: every string
// that held a {{variable}} must now hold none, and what was substituted (the
// rendered string with the template's literal text taken off) must be 1-253
// bytes of printable ASCII without whitespace, glob, quoting or shell
// characters, or "..".
func unsafeRendered(tmpl, got *runbooks.Action) string {
	var walk func(field string, t, g any) string
	walk = func(field string, t, g any) string {
		switch x := t.(type) {
		case string:
			if !strings.Contains(x, "{{") {
				return ""
			}
			s, ok := g.(string)
			if !ok {
				return fmt.Sprintf("%s as %T %v", field, g, g)
			}
			if strings.Contains(s, "{{") {
				return fmt.Sprintf("%s %q still templated", field, s)
			}
			lits := templateLiterals(x)
			for _, l := range lits {
				i := strings.Index(s, l)
				if i < 0 {
					return fmt.Sprintf("%s %q lost the literal %q of %q", field, s, l, x)
				}
				s = s[:i] + "\x00" + s[i+len(l):] // a separator no substituted value may hold
			}
			for _, v := range strings.Split(s, "\x00") {
				if v == "" {
					continue
				}
				if len(v) > 253 || strings.Contains(v, "..") {
					return fmt.Sprintf("%s substituted %q (%d bytes)", field, v, len(v))
				}
				for i := 0; i < len(v); i++ {
					if c := v[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("*?[]{}\\`'\"$;|&<>", c) >= 0 {
						return fmt.Sprintf("%s substituted %q holding byte %q", field, v, c)
					}
				}
			}
		case map[string]any:
			gm, ok := g.(map[string]any)
			if !ok {
				return fmt.Sprintf("%s as %T", field, g)
			}
			for k, v := range x {
				if p := walk(field+"."+k, v, gm[k]); p != "" {
					return p
				}
			}
		case []any:
			gl, ok := g.([]any)
			if !ok || len(gl) != len(x) {
				return fmt.Sprintf("%s as %T %v", field, g, g)
			}
			for i := range x {
				if p := walk(fmt.Sprintf("%s[%d]", field, i), x[i], gl[i]); p != "" {
					return p
				}
			}
		}
		return ""
	}
	for _, f := range [][3]string{
		{"target.namespace", tmpl.Target.Namespace, got.Target.Namespace},
		{"target.deployment", tmpl.Target.Deployment, got.Target.Deployment},
		{"target.service", tmpl.Target.Service, got.Target.Service},
	} {
		if p := walk(f[0], f[1], f[2]); p != "" {
			return p
		}
	}
	return walk("parameters", tmpl.Parameters, got.Parameters)
}

var templateVar = regexp.MustCompile(`\{\{[^}]*\}\}`)

// templateLiterals is the literal text between a template's variables.
func templateLiterals(s string) []string {
	var out []string
	for _, l := range templateVar.Split(s, -1) {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
