package regfile

import (
	"strings"
	"testing"
)

func TestValue(t *testing.T) {
	tests := []struct {
		name, line, wantName, wantValue, wantErr string
	}{
		{"a string with escaped quotes and backslashes", `"UninstallString"="\"C:\\Program Files\\x.exe\" /S"`, "UninstallString", `"C:\Program Files\x.exe" /S`, ""},
		{"a dword becomes decimal", `"SystemComponent"=dword:0000000a`, "SystemComponent", "10", ""},
		{"an expand string is decoded to its text", `"P"=hex(2):25,00,53,00,00,00`, "P", "%S", ""},
		{"a qword is little-endian", `"Q"=hex(b):01,01,00,00,00,00,00,00`, "Q", "257", ""},
		{"the default value has no name", `@="x"`, "", "x", ""},
		{"a line that is no value is an error", `DisplayName=x`, "", "", "want \"name\"=value"},
		{"a dword that is not hex is an error", `"D"=dword:zz`, "", "", `value "D"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, value, err := Value(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantName || value != tt.wantValue {
				t.Errorf("got %q=%q, want %q=%q", name, value, tt.wantName, tt.wantValue)
			}
		})
	}
}
