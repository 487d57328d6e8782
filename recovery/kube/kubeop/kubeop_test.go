package kubeop

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

var nameSeeds = []string{"", "a", "-", "a-", "-a", "api-gateway", "API-GATEWAY", "svc.prod", "svc..prod", ".svc",
	"svc.", "a.b-c.d", "a_b", "ünï", "a b", strings.Repeat("a", 63), strings.Repeat("a", 64),
	strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127) + "a", "0", "9-9", "x.-y", "x-.y"}

// The fast paths must answer exactly as apimachinery does: a name the driver
// accepts is one the API server accepts, and a refusal keeps its messages.
func TestNameChecksAgreeWithApimachinery(t *testing.T) {
	for _, s := range nameSeeds {
		if got, want := DNSLabel(s), validation.IsDNS1123Label(s); !reflect.DeepEqual(got, want) {
			t.Errorf("DNSLabel(%q) = %q, want %q", s, got, want)
		}
		if got, want := DNSSubdomain(s), validation.IsDNS1123Subdomain(s); !reflect.DeepEqual(got, want) {
			t.Errorf("DNSSubdomain(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNameChecksAgreeWithApimachinery(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := DNSLabel(s), validation.IsDNS1123Label(s); !reflect.DeepEqual(got, want) {
			t.Errorf("DNSLabel(%q) = %q, want %q", s, got, want)
		}
		if got, want := DNSSubdomain(s), validation.IsDNS1123Subdomain(s); !reflect.DeepEqual(got, want) {
			t.Errorf("DNSSubdomain(%q) = %q, want %q", s, got, want)
		}
	})
}
