package bot

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeEvent holds the fast event parser to encoding/json's answers: the
// same event, or an error exactly when encoding/json errs.
func FuzzDecodeEvent(f *testing.F) {
	for _, b := range referenceJSON {
		f.Add(b)
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"type":"X","Type":"Y"}`, `{"TYPE":"LATENCY_ANOMALY"}`,
		`{"confidence":null}`, `{"confidence":1e400}`, `{"confidence":01}`, `{"data":{"a":[1,{"b":null}],"c":true}}`,
		`{"summary":"caf\u00e9"}`, `{"summary":"é"}`, `{"id":"x",}`, `{"id":"x"} trailing`, `{"data":null,"context":{}}`,
		`{"unknown":{"deep":[[[]]]},"type":"ERROR_RATE_SPIKE"}`, `{"confidence":-0.5e-3}`, `{"confidence":"0.9"}`,
		`{"data":{"k":1,"k":2}}`, "{\"id\":\"a\x01b\"}", `{"id":"a\"b"}`,
		// Around the bounds (recovery/eventcaps.go), which neither parser
		// applies (ValidateEvent does, after either): 9 levels, and past the
		// fast path's own 64, where encoding/json takes over.
		`{"data":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}}`,
		`{"context":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `}`,
		`{"data":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, std eventJSON
		errFast := decodeEvent(b, &fast)
		errStd := json.Unmarshal(b, &std)
		if (errFast == nil) != (errStd == nil) {
			t.Fatalf("input %q: fast err %v, encoding/json err %v", b, errFast, errStd)
		}
		if errStd == nil && !reflect.DeepEqual(fast, std) {
			t.Fatalf("input %q:\nfast %#v\n std %#v", b, fast, std)
		}
	})
}

func TestFastParserTakesTheCommonCase(t *testing.T) {
	for _, b := range referenceJSON {
		var ej eventJSON
		p := fastParser{b: b}
		if !p.event(&ej) || !p.end() {
			t.Errorf("fast path refused %s", b)
		}
	}
}
