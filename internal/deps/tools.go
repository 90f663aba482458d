//go:build tools

// Package deps pins the modules wabulk builds on before every one of them is imported by real code.
package deps

import (
	_ "github.com/alicebob/miniredis/v2"
	_ "github.com/chromedp/chromedp"
	_ "github.com/hibiken/asynq"
	_ "github.com/hibiken/asynqmon"
	_ "github.com/nyaruka/phonenumbers"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/spf13/cobra"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.org/x/time/rate"
)
