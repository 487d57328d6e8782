package runbooks

import (
	"fmt"
	"strings"
)

// problem is one per-field rule an action breaks. The loader turns it into an
// *Error with the field's file:line, Render into a *RenderError.
type problem struct {
	field  string // relative to the action: "parameters.pattern", "target.namespace"
	value  string // the offending value; "" when missing or of the wrong type
	reason string
}

const (
	labelRule     = "is not a DNS-1123 label (lowercase letters, digits and '-', at most 63 bytes)"
	subdomainRule = "is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 bytes)"
)

// checkAction applies the per-field rules of the action's type. At load time
// (literalOnly) a string that still holds a {{template}} is only type-checked; Render
// checks the value it renders to. It returns nil when all is well, so the render path
// does not allocate for it.
func checkAction(a *Action, literalOnly bool) []problem {
	c := checker{a: a, literalOnly: literalOnly}
	c.name("target.namespace", a.Target.Namespace, isDNSLabel, labelRule)
	c.name("target.deployment", a.Target.Deployment, isDNSSubdomain, subdomainRule)
	c.name("target.service", a.Target.Service, isDNSSubdomain, subdomainRule)

	why := requiredFor[a.Type] // a constant per type: concatenating here would allocate on every Render
	switch a.Type {
	case ScaleResource:
		if a.Resource == "" {
			c.add("resource", "", why)
		}
		c.number("parameters.to", why)
		if a.Gradual {
			why := "is required for a gradual SCALE_RESOURCE"
			c.number("parameters.from", why)
			if inc, ok := c.number("parameters.increment", why); ok && !(inc > 0) {
				c.add("parameters.increment", "", "must be greater than 0")
			}
		}
	case CircuitBreaker:
		if a.Operation != "OPEN" && a.Operation != "CLOSE" {
			if a.Operation == "" {
				c.add("operation", "", "is required for CIRCUIT_BREAKER (OPEN or CLOSE)")
			} else {
				c.add("operation", a.Operation, "must be OPEN or CLOSE")
			}
		}
		if s, ok := c.str("parameters.service", true, why); ok {
			c.name("parameters.service", s, isDNSSubdomain, subdomainRule)
		}
	case RestartPod:
		// The deployment may be named in parameters (the reference playbook's place)
		// or in target; when both are set they must agree, or TargetKey would lock one
		// deployment while the driver restarts another.
		s, ok := c.str("parameters.deployment", false, "")
		if ok {
			c.name("parameters.deployment", s, isDNSSubdomain, subdomainRule)
		}
		td := a.Target.Deployment
		switch {
		case !ok && td == "":
			if _, present := a.Parameters["deployment"]; !present {
				c.add("parameters.deployment", "", "is required for RESTART_POD (or set target.deployment)")
			}
		case ok && td != "" && s != td && !c.skip(s) && !c.skip(td):
			c.add("parameters.deployment", s, fmt.Sprintf("disagrees with target.deployment %q", td))
		}
	case CacheClear:
		if s, ok := c.str("parameters.pattern", true, why); ok && !c.skip(s) {
			if r := cachePatternProblem(s); r != "" {
				c.add("parameters.pattern", s, r)
			}
		}
	case RateLimit:
		if s, ok := c.str("parameters.target", true, why); ok && !c.skip(s) && !isRateLimitTarget(s) {
			c.add("parameters.target", s, "must be 1-253 characters from A-Z a-z 0-9 . : _ / -")
		}
		if n, ok := c.number("parameters.limit", why); ok && n < 0 {
			c.add("parameters.limit", "", "must not be negative")
		}
		if n, ok := c.number("parameters.window", why); ok && !(n > 0) {
			c.add("parameters.window", "", "must be greater than 0")
		}
	case Failover:
		from, ok1 := c.str("parameters.from", true, why)
		if ok1 {
			c.name("parameters.from", from, isDNSSubdomain, subdomainRule)
		}
		to, ok2 := c.str("parameters.to", true, why)
		if ok2 {
			c.name("parameters.to", to, isDNSSubdomain, subdomainRule)
		}
		if ok1 && ok2 && from == to && !c.skip(from) {
			c.add("parameters.to", to, "is the same as parameters.from")
		}
	}
	return c.ps
}

var requiredFor = func() map[ActionType]string {
	m := map[ActionType]string{}
	for _, t := range ActionTypes {
		m[t] = "is required for " + string(t)
	}
	return m
}()

type checker struct {
	a           *Action
	literalOnly bool
	ps          []problem
}

func (c *checker) add(field, value, reason string) {
	c.ps = append(c.ps, problem{field: field, value: value, reason: reason})
}

// skip reports whether v is a template whose check waits for Render.
func (c *checker) skip(v string) bool { return c.literalOnly && strings.Contains(v, "{{") }

// name checks an optional name field against rule.
func (c *checker) name(field, v string, valid func(string) bool, rule string) {
	if v != "" && !c.skip(v) && !valid(v) {
		c.add(field, v, rule)
	}
}

// str returns parameter field ("parameters.<key>") as a non-empty string. A missing
// or null value is reported when required; a value of another type always is.
func (c *checker) str(field string, required bool, why string) (string, bool) {
	key := strings.TrimPrefix(field, "parameters.")
	v, present := c.a.Parameters[key]
	if !present || v == nil {
		if required {
			c.add(field, "", why)
		}
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		c.add(field, "", "must be a string, got "+jsonKind(v))
		return "", false
	}
	if s == "" {
		c.add(field, "", "must not be empty")
		return "", false
	}
	return s, true
}

// number returns a required numeric parameter. The loader leaves every YAML number
// as float64, as encoding/json does, and the drivers read them with Action.Number.
func (c *checker) number(field, why string) (float64, bool) {
	key := strings.TrimPrefix(field, "parameters.")
	v, present := c.a.Parameters[key]
	if !present || v == nil {
		c.add(field, "", why)
		return 0, false
	}
	f, ok := v.(float64)
	if !ok {
		c.add(field, "", "must be a number, got "+jsonKind(v))
		return 0, false
	}
	return f, true
}

// jsonKind names a decoded value's kind the way a runbook author thinks of it.
func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", truncate(v))
	case float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprintf("number %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case map[string]any, map[string]string:
		return "a map"
	case []any, []string:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

// truncate shortens a value quoted in an error message; event data may be large.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
