package ha

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestReadJournal(t *testing.T) {
	for _, tc := range []struct {
		name, journal string
		want          []call
		wantErr       string
	}{
		{"lines become calls with their replica and line",
			`{"op":"apply","execution":"x1","action":0,"type":"CACHE_CLEAR","target":"redis:a","at":"2026-01-02T03:04:05Z","term":7}
{"op":"undo","execution":"x1","action":0,"type":"CACHE_CLEAR","target":"redis:a","at":"2026-01-02T03:04:05.5Z","term":9}
`, []call{
				{Replica: "r1", Line: 1, Op: "apply", Execution: "x1", Type: "CACHE_CLEAR", Target: "redis:a", At: t0, Term: 7},
				{Replica: "r1", Line: 2, Op: "undo", Execution: "x1", Type: "CACHE_CLEAR", Target: "redis:a", At: at(500), Term: 9},
			}, ""},
		{"a torn last line is no call",
			`{"op":"apply","execution":"x1","action":0,"at":"2026-01-02T03:04:05Z","term":7}
{"op":"apply","exec`, []call{{Replica: "r1", Line: 1, Op: "apply", Execution: "x1", At: t0, Term: 7}}, ""},
		{"a bad line before the last is an error naming it",
			`{"op":"apply","exec
{"op":"apply","execution":"x1","action":0,"at":"2026-01-02T03:04:05Z","term":7}
`, nil, "journal r1 line 1"},
		{"an unknown op is an error",
			`{"op":"delete","execution":"x1","action":0,"at":"2026-01-02T03:04:05Z","term":7}
{"op":"apply","execution":"x1","action":0,"at":"2026-01-02T03:04:05Z","term":7}
`, nil, "journal r1 line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readJournal(strings.NewReader(tc.journal), "r1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRepeatedCalls(t *testing.T) {
	apply := func(r, x string, a int) call {
		return call{Replica: r, Op: "apply", Execution: x, Action: a, At: t0, Term: 1}
	}
	undo := func(r, x string, a int) call {
		return call{Replica: r, Op: "undo", Execution: x, Action: a, At: t0, Term: 1}
	}
	for _, tc := range []struct {
		name  string
		calls []call
		want  int
	}{
		{"apply and undo of each action once: none", []call{apply("r1", "x1", 0), apply("r1", "x1", 1), undo("r2", "x1", 0)}, 0},
		{"the same apply in two replicas' journals", []call{apply("r1", "x1", 0), apply("r2", "x1", 0)}, 1},
		{"the same apply twice in one journal", []call{apply("r1", "x1", 0), apply("r1", "x1", 0)}, 1},
		{"an undo done twice by two leaders", []call{apply("r1", "x1", 0), undo("r1", "x1", 0), undo("r3", "x1", 0)}, 1},
		{"same action index of another execution", []call{apply("r1", "x1", 0), apply("r2", "x2", 0)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := repeatedCalls(tc.calls); len(got) != tc.want {
				t.Errorf("repeatedCalls = %q, want %d", got, tc.want)
			}
		})
	}
	if got := unpairedUndos([]call{undo("r1", "x9", 1)}); len(got) != 1 {
		t.Errorf("unpairedUndos of a lone undo = %q, want one", got)
	}
}

func TestLateCalls(t *testing.T) {
	c := func(term int64, ms int) call {
		return call{Replica: "r", Op: "apply", Execution: "x", Action: ms, At: at(ms), Term: term}
	}
	lost := map[int64]time.Time{10: at(1000), 20: at(5000)}
	for _, tc := range []struct {
		name  string
		calls []call
		want  int
	}{
		{"each term acts before it ends, one after the other", []call{c(10, 100), c(10, 900), c(20, 2000), c(30, 6000)}, 0},
		{"a paused leader acts after its key was seen gone", []call{c(10, 100), c(10, 1200)}, 1},
		{"an old term acts after the new one began (before its end was seen)", []call{c(20, 2000), c(30, 3000), c(20, 3500)}, 1},
		{"a call under no term", []call{c(0, 100)}, 1},
		{"a term never seen ending may go on", []call{c(30, 6000), c(30, 9000)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lateCalls(tc.calls, lost); len(got) != tc.want {
				t.Errorf("lateCalls = %q, want %d", got, tc.want)
			}
		})
	}
}

func TestLeaderships(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []electionKey
		want []span
	}{
		{"one after the other", []electionKey{{Term: 5, Deleted: 40}, {Term: 7, Deleted: 90}, {Term: 41}},
			[]span{{5, 5, 40}, {7, 40, 90}, {41, 90, 0}}},
		{"a newer key deleted while an older one led never led", []electionKey{{Term: 5, Deleted: 50}, {Term: 7, Deleted: 30}, {Term: 8}},
			[]span{{5, 5, 50}, {8, 50, 0}}},
		{"behind a live leader nobody leads", []electionKey{{Term: 5}, {Term: 7, Deleted: 30}, {Term: 8}},
			[]span{{5, 5, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leaderships(tc.keys); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("leaderships = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInterleavedWrites(t *testing.T) {
	spans := []span{{5, 5, 40}, {7, 40, 90}, {41, 90, 0}}
	for _, tc := range []struct {
		name   string
		writes []write
		want   int
	}{
		{"each leader within its span, one after the other", []write{{6, "a"}, {39, "a"}, {41, "b"}, {89, "b"}, {95, "c"}}, 0},
		{"a deposed leader writes after the next one began", []write{{6, "a"}, {45, "b"}, {50, "a"}}, 2}, // a's run resumes, in term 7
		{"two processes write in one term, taking turns", []write{{41, "b"}, {42, "x"}, {43, "b"}}, 1},
		{"a write while nobody led", []write{{2, "a"}}, 1},
		{"revision order, not input order, counts", []write{{95, "c"}, {6, "a"}, {41, "b"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := interleavedWrites(tc.writes, spans); len(got) != tc.want {
				t.Errorf("interleavedWrites = %q, want %d", got, tc.want)
			}
		})
	}
}

func TestUndoTally(t *testing.T) {
	undo := func(x string, a int) call { return call{Op: "undo", Execution: x, Action: a, At: t0, Term: 1} }
	must := map[actionKey]bool{{"x1", 0}: true, {"x1", 1}: true}
	for _, tc := range []struct {
		name         string
		calls        []call
		unsure       map[actionKey]bool
		wantReverted int
		wantHeld     int
		wantProblems int
	}{
		{"each reverted once", []call{undo("x1", 1), undo("x1", 0)}, nil, 2, 0, 0},
		{"one never reverted", []call{undo("x1", 0)}, nil, 1, 0, 1},
		{"one reverted twice", []call{undo("x1", 0), undo("x1", 0), undo("x1", 1)}, nil, 1, 0, 1},
		{"an undo of an action not to revert", []call{undo("x1", 0), undo("x1", 1), undo("x2", 0)}, nil, 2, 0, 1},
		{"an unsure undo never called", []call{undo("x1", 0)}, map[actionKey]bool{{"x1", 1}: true}, 1, 1, 0},
		{"an unsure undo called once", []call{undo("x1", 0), undo("x1", 1)}, map[actionKey]bool{{"x1", 1}: true}, 2, 0, 0},
		{"an unsure undo called twice", []call{undo("x1", 0), undo("x1", 1), undo("x1", 1)}, map[actionKey]bool{{"x1", 1}: true}, 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, f, problems := undoTally(tc.calls, must, tc.unsure)
			if n != tc.wantReverted || f != tc.wantHeld || len(problems) != tc.wantProblems {
				t.Errorf("undoTally = %d, %d, %q; want %d reverted, %d held, %d problems", n, f, problems, tc.wantReverted, tc.wantHeld, tc.wantProblems)
			}
		})
	}
}
