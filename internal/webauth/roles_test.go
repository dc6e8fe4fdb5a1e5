package webauth

import (
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoles(t *testing.T) {
	users := writeUsers(t, "ops:"+hashY(t, "ops-pw")+"\nviewer:"+hashY(t, "view-pw")+"\n")
	a := newAuth(t, Config{UsersFile: users, Token: "tok-123", Admins: []string{"ops"}})
	tests := []struct {
		name, user, password string
		wantUser             string
		wantErr              error
	}{
		{"a user named in Admins is an admin", "ops", "ops-pw", "ops", nil},
		{"a user not named in Admins is a viewer", "viewer", "view-pw", "", ErrNotAdmin},
		{"the token is an admin", TokenUser, "tok-123", TokenUser, nil},
		{"a wrong password is not an admin either", "ops", "nope", "", ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/hosts/h1/drain", nil)
			r.SetBasicAuth(tt.user, tt.password)
			got, err := a.Admin(r)
			if got != tt.wantUser || !errors.Is(err, tt.wantErr) {
				t.Errorf("Admin = %q, %v; want %q, %v", got, err, tt.wantUser, tt.wantErr)
			}
		})
	}
	t.Run("a request without credentials is not an admin", func(t *testing.T) {
		if got, err := a.Admin(httptest.NewRequest("POST", "/", nil)); !errors.Is(err, ErrNoCredentials) {
			t.Errorf("Admin = %q, %v; want ErrNoCredentials", got, err)
		}
	})
	t.Run("a viewer's session cookie does not make an admin", func(t *testing.T) {
		c, err := login(t, a, "viewer", "view-pw")
		if err != nil {
			t.Fatal(err)
		}
		if a.IsAdmin("viewer") {
			t.Error("IsAdmin(viewer) = true")
		}
		if _, err := a.Admin(withCookie(c)); !errors.Is(err, ErrNotAdmin) {
			t.Errorf("Admin with the viewer's cookie = %v, want ErrNotAdmin", err)
		}
	})
	t.Run("without a users file the token alone is the admin", func(t *testing.T) {
		b := newAuth(t, Config{Token: "tok-123"})
		if !b.IsAdmin(TokenUser) || b.IsAdmin("ops") {
			t.Errorf("IsAdmin(token) = %v, IsAdmin(ops) = %v; want true, false", b.IsAdmin(TokenUser), b.IsAdmin("ops"))
		}
	})
	t.Run("an open Auth lets everyone change things as anonymous", func(t *testing.T) {
		b := newAuth(t, Config{})
		if got, err := b.Admin(httptest.NewRequest("POST", "/", nil)); got != AnonymousUser || err != nil {
			t.Errorf("Admin = %q, %v; want %q", got, err, AnonymousUser)
		}
	})
}

func TestAdminsConfig(t *testing.T) {
	users := writeUsers(t, "ops:"+hashY(t, "pw")+"\n")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"an admin missing from the users file is an error naming it", Config{UsersFile: users, Admins: []string{"opz"}}, `admin "opz" is not in the users file`},
		{"admins without a users file are an error", Config{Token: "t", Admins: []string{"ops"}}, "no users file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadOnlyWhenOpen(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantUser  string
		wantErr   error
		wantAdmin bool
	}{
		{"an open Auth lets anyone change things", Config{}, AnonymousUser, nil, true},
		{"a read-only open Auth lets nobody", Config{ReadOnlyWhenOpen: true}, "", ErrOpenReadOnly, false},
		{"with a token read-only does not apply", Config{Token: "tok-123", ReadOnlyWhenOpen: true}, TokenUser, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuth(t, tt.cfg)
			r := httptest.NewRequest("POST", "/api/hosts/h1/drain", nil)
			r.Header.Set("Authorization", "Bearer tok-123")
			got, err := a.Admin(r)
			if got != tt.wantUser || !errors.Is(err, tt.wantErr) {
				t.Errorf("Admin = %q, %v; want %q, %v", got, err, tt.wantUser, tt.wantErr)
			}
			if got := a.IsAdmin(got); got != tt.wantAdmin {
				t.Errorf("IsAdmin = %v, want %v", got, tt.wantAdmin)
			}
		})
	}
	if !strings.Contains(ErrOpenReadOnly.Error(), "--token-file or --users") {
		t.Errorf("ErrOpenReadOnly does not say what to configure: %v", ErrOpenReadOnly)
	}
}
