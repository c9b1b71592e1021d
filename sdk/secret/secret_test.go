package secret

import (
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "correct horse") || !strings.HasPrefix(h, "$argon2id$") {
		t.Fatalf("hash %q", h)
	}
	if !Verify(h, "correct horse") {
		t.Fatal("right password rejected")
	}
	if Verify(h, "correct horsE") || Verify(h, "") {
		t.Fatal("wrong password accepted")
	}
	h2, _ := Hash("correct horse")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if !IsHash(h) || IsHash("correct horse") {
		t.Fatal("IsHash")
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected parameters: %s", h)
	}
	// A hash whose stored key was altered no longer verifies.
	tampered := h[:len(h)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(h, "AA")]
	if Verify(tampered, "correct horse") {
		t.Fatal("tampered hash verified")
	}
}

func TestMalformedHashesMatchNothing(t *testing.T) {
	for _, bad := range []string{"", "$argon2id$", "plain", "$argon2id$v=19$m=1,t=1,p=1$$",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19x$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1junk$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5$extra"} {
		if Verify(bad, "") || Verify(bad, "x") || IsHash(bad) {
			t.Fatalf("malformed hash %q accepted", bad)
		}
	}
}
