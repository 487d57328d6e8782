package amsilence_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/amsilence"
)

// TestMatchers: labels come from outside; only ones that make an exact
// matcher of that alert reach Alertmanager.
func TestMatchers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   string // an error containing this; "" for none
	}{
		{"exact matchers, sorted", map[string]string{"severity": "warning", "alertname": "DBPool", "_x9": "a\"b\n{c}=~.*"}, ""},
		{"no labels is refused: it would match every alert", nil, "no labels"},
		{"empty labels is refused", map[string]string{}, "no labels"},
		{"a name with a dash", map[string]string{"alertname": "x", "bad-name": "v"}, `label name "bad-name"`},
		{"a name starting with a digit", map[string]string{"9lives": "v"}, `label name "9lives"`},
		{"a reserved name", map[string]string{"__name__": "up"}, `label name "__name__"`},
		{"a name with a regex", map[string]string{"a|b": "v"}, `label name "a|b"`},
		{"a name with a newline", map[string]string{"a\nb": "v"}, `label name "a\nb"`},
		{"a non-ASCII name", map[string]string{"é": "v"}, "label name"},
		{"an empty name", map[string]string{"": "v"}, `label name ""`},
		{"an empty value would match alerts without the label", map[string]string{"alertname": "x", "team": ""}, "label team is empty"},
		{"a value that is not UTF-8", map[string]string{"alertname": "\xff\xfe"}, "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := amsilence.Matchers(tc.labels)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				if m != nil {
					t.Errorf("matchers %v with an error", m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != len(tc.labels) {
				t.Fatalf("%d matchers for %d labels", len(m), len(tc.labels))
			}
			for i, x := range m {
				if i > 0 && m[i-1].Name >= x.Name {
					t.Errorf("matchers not sorted by name: %v", m)
				}
				if !x.IsEqual || x.IsRegex || tc.labels[x.Name] != x.Value {
					t.Errorf("matcher %+v, want %s=%q exact (isEqual, not regex)", x, x.Name, tc.labels[x.Name])
				}
			}
		})
	}
}

// TestMatchersLongName: a refused name is cut in the message, whatever its
// length (the event's bounds allow 4 KiB keys).
func TestMatchersLongName(t *testing.T) {
	_, err := amsilence.Matchers(map[string]string{strings.Repeat("-", 4096): "v"})
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("err = %v, want a short refusal", err)
	}
}

// TestTooManyLabels: the count and size of an alert's labels are the event's
// bounds (recovery.BoundEvent), which the intake enforces before a plan is
// made: no second bound here.
func TestTooManyLabels(t *testing.T) {
	labels := map[string]string{}
	for i := range recovery.MaxDataKeys + 1 {
		labels[fmt.Sprintf("l%d", i)] = "v"
	}
	ev := recovery.Event{Labels: labels}
	err := recovery.BoundEvent(&ev)
	if recovery.ErrorCode(err) != recovery.CodeTooLarge || !strings.Contains(err.Error(), "labels") {
		t.Fatalf("BoundEvent(%d labels) = %v, want %s naming the labels", len(labels), err, recovery.CodeTooLarge)
	}
	ev = recovery.Event{Labels: map[string]string{"alertname": strings.Repeat("x", recovery.MaxDataString+1)}}
	if err := recovery.BoundEvent(&ev); recovery.ErrorCode(err) != recovery.CodeTooLarge || !strings.Contains(err.Error(), "labels.alertname") {
		t.Fatalf("BoundEvent(a label value over %d bytes) = %v, want %s at labels.alertname", recovery.MaxDataString, err, recovery.CodeTooLarge)
	}
}

func TestNewRefusesABadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:9093", "ftp://am", "http://"} {
		if _, err := amsilence.New(u, nil); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := amsilence.New("http://user:secret@am:9093", nil); err != nil {
		t.Errorf("New with credentials: %v", err)
	}
}
