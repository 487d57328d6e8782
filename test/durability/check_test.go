package durability

import (
	"strings"
	"testing"
)

// TestCheckDurable runs the checker on hand-written traces, so each way of
// answering too early is shown to fail it (the same check, with the store's
// NoSync set, fails TestAcknowledgedEventsAreSyncedFirst).
func TestCheckDurable(t *testing.T) {
	const (
		open  = `10 openat(AT_FDCWD, "/d/r.db", O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 5`
		data  = `11 pwrite64(5, "\2\0\0\0\0\0\0\0\2\0{\"id\":\"ev-1\"}", 4096, 8192) = 4096`
		sync1 = `11 fdatasync(5)                      = 0`
		meta  = `11 pwrite64(5, "\1\0\0\0\0\0\0\0\4\0\0\0", 4096, 4096) = 4096`
		sync2 = `11 fdatasync(5)                      = 0`
		reply = `12 write(9, "HTTP/1.1 202 Accepted\r\n\r\n{\"event_id\":\"ev-1\",\"decision\":\"auto\"}", 60) = 60`
	)
	tests := []struct {
		name, trace, wantErr string
	}{
		{"synced before the reply", strings.Join([]string{open, data, sync1, meta, sync2, reply}, "\n"), ""},
		{"sync finished in another line before the reply",
			strings.Join([]string{open, data, meta, `11 fdatasync(5 <unfinished ...>`, `13 write(2, "log", 3) = 3`, `11 <... fdatasync resumed>) = 0`, reply}, "\n"), ""},
		{"reply while the sync is still running",
			strings.Join([]string{open, data, meta, `11 fdatasync(5 <unfinished ...>`, reply, `11 <... fdatasync resumed>) = 0`}, "\n"), "before it was synced"},
		{"no sync at all (NoSync)", strings.Join([]string{open, data, meta, reply}, "\n"), "before it was synced"},
		{"sync before the meta page only", strings.Join([]string{open, data, sync1, meta, reply}, "\n"), "before it was synced"},
		{"no meta page (not committed)", strings.Join([]string{open, data, sync1, reply}, "\n"), "before it was committed"},
		{"reply before the data was written", strings.Join([]string{open, reply, data, sync1, meta, sync2}, "\n"), "before it was written"},
		{"a sync of another file", strings.Join([]string{open, data, meta, `11 fdatasync(6) = 0`, reply}, "\n"), "before it was synced"},
		{"a failed sync", strings.Join([]string{open, data, meta, `11 fdatasync(5) = -1 EIO (Input/output error)`, reply}, "\n"), "before it was synced"},
		{"the event only in another file", strings.Join([]string{open, strings.Replace(data, "(5,", "(7,", 1), meta, sync2, reply}, "\n"), "before it was written"},
		{"no reply", strings.Join([]string{open, data, meta, sync2}, "\n"), "no 2xx reply"},
		{"a 503 is no acknowledgement", strings.Join([]string{open, data, meta, sync2, strings.Replace(reply, "202 Accepted", "503 Service Unavailable", 1)}, "\n"), "no 2xx reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := parseTrace(strings.NewReader(tt.trace))
			if err != nil {
				t.Fatal(err)
			}
			err = tr.checkDurable("/d/r.db", "ev-1")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
