// Package logging builds wabulk's zap logger (JSON, one line per event) and masks phone numbers.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a JSON zap logger at level writing to w (os.Stderr when nil).
func New(level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("WABULK_LOG_LEVEL: %v", err)
	}
	if w == nil {
		w = os.Stderr
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.MillisDurationEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}

// Masker shows phone numbers in logs: masked ("+91******7890") unless Full.
type Masker struct{ Full bool }

// NewMasker reads WABULK_LOG_PII's value ("masked" or "full").
func NewMasker(mode string) Masker { return Masker{Full: mode == "full"} }

// Phone returns the number as logs show it.
func (m Masker) Phone(n string) string {
	if m.Full {
		return n
	}
	return MaskPhone(n)
}

// TaskID returns a task id as logs show it: the recipient, its last ':'-separated part, masked.
func (m Masker) TaskID(id string) string {
	i := strings.LastIndexByte(id, ':')
	if m.Full || i < 0 {
		return id
	}
	return id[:i+1] + MaskPhone(id[i+1:])
}

// MaskPhone keeps a leading '+', the first two and the last four digits and stars the rest:
// "+919876547890" → "+91******7890". Numbers of eight characters or fewer keep only the last two.
func MaskPhone(n string) string {
	if n == "" {
		return ""
	}
	b := []byte(n)
	start := 0
	if b[0] == '+' {
		start = 1
	}
	keepHead, keepTail := 2, 4
	if len(b)-start <= 8 {
		keepHead, keepTail = 0, 2
	}
	for i := start + keepHead; i < len(b)-keepTail; i++ {
		b[i] = '*'
	}
	return string(b)
}
