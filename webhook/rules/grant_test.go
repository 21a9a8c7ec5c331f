package rules

import "testing"

func TestGranted(t *testing.T) {
	clone := Source{Kind: KindClaim, Name: "src", Namespace: "team-a"}
	snap := Source{APIGroup: SnapshotAPIGroup, Kind: KindSnapshot, Name: "nightly", Namespace: "team-a"}
	fromB := []GrantFrom{{Kind: KindClaim, Namespace: "team-b"}}
	cases := []struct {
		name   string
		grants []ReferenceGrant
		src    Source
		want   bool
	}{
		{"no grant, no entry", nil, clone, false},
		{"grants every claim to team-b", []ReferenceGrant{{From: fromB, To: []GrantTo{{Kind: KindClaim}}}}, clone, true},
		{"grants the named claim", []ReferenceGrant{{From: fromB, To: []GrantTo{{Kind: KindClaim, Name: "src"}}}}, clone, true},
		{"grants another claim only", []ReferenceGrant{{From: fromB, To: []GrantTo{{Kind: KindClaim, Name: "other"}}}}, clone, false},
		{"grants another namespace", []ReferenceGrant{{From: []GrantFrom{{Kind: KindClaim, Namespace: "team-c"}}, To: []GrantTo{{Kind: KindClaim}}}}, clone, false},
		{"grants from another kind", []ReferenceGrant{{From: []GrantFrom{{Group: "apps", Kind: "StatefulSet", Namespace: "team-b"}}, To: []GrantTo{{Kind: KindClaim}}}}, clone, false},
		{"grants claims, not snapshots", []ReferenceGrant{{From: fromB, To: []GrantTo{{Kind: KindClaim}}}}, snap, false},
		{"grants snapshots by group and kind", []ReferenceGrant{{From: fromB, To: []GrantTo{{Group: SnapshotAPIGroup, Kind: KindSnapshot}}}}, snap, true},
		{"a later grant matches", []ReferenceGrant{{From: fromB, To: []GrantTo{{Kind: "Secret"}}}, {From: fromB, To: []GrantTo{{Kind: KindClaim}}}}, clone, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Granted(c.grants, "team-b", c.src); got != c.want {
				t.Errorf("Granted = %v, want %v", got, c.want)
			}
		})
	}
}
