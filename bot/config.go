package bot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/claude"
	"github.com/recoverbot/recoverbot/store/etcdstore"
)

// Config is every setting of the process. Each field has a YAML key (the config
// file) and a RECOVERBOT_<KEY> environment variable (upper-cased key), which
// wins over the file. Fields tagged secret come only from the environment.
type Config struct {
	Listen                 string         `yaml:"listen" help:"HTTP listen address (intake, admin API, health)"`
	Data                   string         `yaml:"data" help:"bbolt database file"`
	Mode                   string         `yaml:"mode" help:"dry-run, low-risk or full"`
	Runbooks               string         `yaml:"runbooks" help:"runbook directory; empty: the embedded defaults"`
	ApprovalTimeout        time.Duration  `yaml:"approval_timeout" help:"how long a plan waits for approval"`
	AutoThreshold          float64        `yaml:"auto_threshold" help:"confidence at or above which a plan may run unattended"`
	DefaultCooldown        time.Duration  `yaml:"default_cooldown" help:"quiet time per runbook and target after a plan closes, when the runbook sets no cooldown"`
	LockWait               time.Duration  `yaml:"lock_wait" help:"how long an execution waits for a busy target"`
	AlertmanagerConfidence float64        `yaml:"alertmanager_confidence" help:"confidence of an alert without a confidence annotation"`
	ShutdownGrace          time.Duration  `yaml:"shutdown_grace" help:"how long SIGTERM waits for running executions"`
	Retention              time.Duration  `yaml:"retention" help:"finished executions, their events and audit older than this are deleted in the background (0 keeps everything)"`
	AdminURL               string         `yaml:"admin_url" help:"where the CLI finds the admin API; default http://<listen>"`
	LogFormat              string         `yaml:"log_format" help:"text or json"`
	SlackChannel           string         `yaml:"slack_channel" help:"Slack incident channel id (C…): plans are posted there; /recover and buttons are taken only from there"`
	SlackApprovers         string         `yaml:"slack_approvers" help:"comma-separated Slack user ids (U…) and user-group ids (S…) who may approve, reject, roll back and pause; a runbook's approvers: overrides"`
	SlackSilence           time.Duration  `yaml:"slack_silence" help:"half-open watchdog: reconnect when nothing arrived on the Slack socket for this long"`
	Drivers                string         `yaml:"drivers" help:"real (the configured backends) or log (record only, change nothing)"`
	LogDriverJournal       string         `yaml:"log_driver_journal" help:"with drivers: log, append a JSON line per driver call to this file"`
	Kubeconfig             string         `yaml:"kubeconfig" help:"kubeconfig file; empty: KUBECONFIG, else in-cluster"`
	RedisURL               string         `yaml:"redis_url" help:"redis://host:port/db for CACHE_CLEAR"`
	GatewayURL             string         `yaml:"gateway_url" help:"HTTP gateway admin API for CIRCUIT_BREAKER, RATE_LIMIT, route FAILOVER"`
	PrometheusURL          string         `yaml:"prometheus_url" help:"Prometheus for verify queries; empty: verification is skipped (and said so)"`
	SignalWebhook          string         `yaml:"signal_webhook" help:"URL that receives a RECOVERY_SIGNAL event (JSON POST) for each verified recovery"`
	AlertmanagerURL        string         `yaml:"alertmanager_url" help:"Alertmanager (API v2) where an alert is silenced while its execution runs; empty: no silences"`
	SilenceMax             time.Duration  `yaml:"silence_max" help:"a silence while remediating ends at the latest this long after the execution started, even if the bot dies (1m..24h)"`
	AIModel                string         `yaml:"ai_model" help:"Claude model for AI planning (only used when ANTHROPIC_API_KEY is set)"`
	AITimeout              time.Duration  `yaml:"ai_timeout" help:"bound on each AI call: a slow, failing or rate-limited AI never delays a plan"`
	AIMaxConcurrent        int            `yaml:"ai_max_concurrent" help:"AI calls in flight at once; an unmatched event over the cap is not sent (counted in /metrics)"`
	AIPerMinute            int            `yaml:"ai_per_minute" help:"AI calls started in any minute; over it, unmatched events are not sent (counted in /metrics, said once in the channel)"`
	AIFoldWindow           time.Duration  `yaml:"ai_fold_window" help:"an unmatched event identical to one sent to the AI this recently is not sent again"`
	AIPromptBytes          int            `yaml:"ai_prompt_bytes" help:"the event shown to the AI is cut to this many bytes of JSON"`
	BlastMaxAuto           int            `yaml:"blast_max_auto" help:"blast-radius breaker: more automatic executions than this within an hour, all runbooks together, stop all automatic execution until resume"`
	BlastMaxTargets        int            `yaml:"blast_max_targets" help:"blast-radius breaker: more distinct targets than this failing within 5 minutes stop all automatic execution until resume"`
	AllowedHosts           string         `yaml:"allowed_hosts" help:"comma-separated host names requests may be addressed to besides loopback ones (a reverse proxy's name); required off loopback"`
	FreezeWindows          []FreezeWindow `yaml:"freeze_windows" fileonly:"true" help:"recurring freezes (config file only): name, cron, duration, time_zone, runbook, target, reason; plans in scope wait for approval"`
	Store                  string         `yaml:"store" help:"bbolt (one replica: the data file) or etcd (HA: several replicas, one leads, the others answer writes with 503)"`
	EtcdEndpoints          string         `yaml:"etcd_endpoints" help:"with store: etcd, comma-separated etcd client URLs (http(s)://host:port)"`
	EtcdPrefix             string         `yaml:"etcd_prefix" help:"with store: etcd, the key prefix of this bot's data and election (one per bot sharing an etcd)"`
	EtcdCA                 string         `yaml:"etcd_ca" help:"with store: etcd, the CA file (PEM) etcd's certificate is checked against; empty: the system's roots"`
	EtcdCert               string         `yaml:"etcd_cert" help:"with store: etcd, this client's certificate file (PEM), with etcd_key"`
	EtcdKey                string         `yaml:"etcd_key" help:"with store: etcd, this client's key file (PEM), with etcd_cert"`
	LeaderTTL              time.Duration  `yaml:"leader_ttl" help:"with store: etcd, the leader's lease: a leader that stops renewing it is replaced after this long (whole seconds, 2s..1m)"`

	IntakeToken  string `yaml:"-" secret:"true" help:"bearer token required on the intake (required off loopback; 16+ characters)"`
	AdminTokens  string `yaml:"-" secret:"true" help:"the admin API's named tokens: name[:SlackUserID]=token,… (required off loopback; 16+ characters each); the audit records the name, or the Slack user"`
	AdminToken   string `yaml:"-" secret:"true" help:"the token the CLI presents to the admin API (one of admin_tokens)"`
	GatewayToken string `yaml:"-" secret:"true" help:"bearer token for the gateway admin API"`
	SigningKey   string `yaml:"-" secret:"true" help:"HMAC key (32+ bytes) signing Slack button values; empty: generated once and kept in the store"`

	file string // the config file it was read from, for file:line in errors
}

// DefaultConfig is the documented default: offline, dry-run, embedded runbooks,
// bbolt under ./data, loopback only.
func DefaultConfig() Config {
	d := recovery.DefaultConfig()
	ab := recovery.DefaultAIBudget()
	return Config{
		Listen:                 "127.0.0.1:8080",
		Data:                   "./data/recoverbot.db",
		Mode:                   string(d.Mode),
		ApprovalTimeout:        d.ApprovalTimeout,
		AutoThreshold:          d.AutoThreshold,
		DefaultCooldown:        d.DefaultCooldown,
		LockWait:               d.LockWait,
		AlertmanagerConfidence: 0.5,
		ShutdownGrace:          30 * time.Second,
		Retention:              90 * 24 * time.Hour,
		LogFormat:              "text",
		Drivers:                "real",
		SlackSilence:           DefaultSlackSilence,
		AIModel:                claude.DefaultModel,
		AITimeout:              5 * time.Second,
		AIMaxConcurrent:        ab.MaxConcurrent,
		AIPerMinute:            ab.PerMinute,
		AIFoldWindow:           ab.FoldWindow,
		AIPromptBytes:          ab.PromptBytes,
		BlastMaxAuto:           d.BlastMaxAuto,
		BlastMaxTargets:        d.BlastMaxTargets,
		SilenceMax:             d.SilenceMax,
		Store:                  StoreBbolt,
		EtcdPrefix:             "/recoverbot/",
		LeaderTTL:              5 * time.Second,
	}
}

// The stores Config.Store names.
const (
	StoreBbolt = "bbolt"
	StoreEtcd  = "etcd"
)

// LoadConfig applies defaults, then the file (unknown keys are errors), then
// RECOVERBOT_* variables from getenv, then Validate.
func LoadConfig(file string, getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", file, err)
		}
		c.file = file
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Settings lists every setting: key, environment variable, default, help.
func Settings() [][4]string {
	d := DefaultConfig()
	v := reflect.ValueOf(d)
	var out [][4]string
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		def, env := fmt.Sprint(v.Field(i).Interface()), "RECOVERBOT_"+strings.ToUpper(key(f))
		switch {
		case f.Tag.Get("secret") == "true":
			def = "(environment only)"
		case f.Tag.Get("fileonly") == "true":
			def, env = "(none)", "(config file only)"
		}
		out = append(out, [4]string{key(f), env, def, f.Tag.Get("help")})
	}
	return out
}

func key(f reflect.StructField) string {
	k := f.Tag.Get("yaml")
	if k == "-" || k == "" {
		// Secrets have no YAML key; their variable follows the field name.
		var b strings.Builder
		for i, r := range f.Name {
			if i > 0 && r >= 'A' && r <= 'Z' {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		}
		return strings.ToLower(b.String())
	}
	return k
}

// otherEnv are RECOVERBOT_* variables that are not settings but are read
// elsewhere: the config file flag's default, the demo page's address
// (internal/demo, make demo), and the knobs of the test and long-run
// suites. CheckEnv accepts them.
var otherEnv = []string{
	"RECOVERBOT_CONFIG", "RECOVERBOT_DEMO_LISTEN", "RECOVERBOT_DEMO_SCREENSHOT",
	"RECOVERBOT_TEST_REDIS_URL", "RECOVERBOT_TEST_KUBECONFIG", "RECOVERBOT_TEST_KUBECONFIG_ADMIN", "RECOVERBOT_TEST_LOG",
	"RECOVERBOT_REQUIRE_INTEGRATION", "RECOVERBOT_REQUIRE_K8S", "RECOVERBOT_IMAGE_TEST",
	"RECOVERBOT_LONG", "RECOVERBOT_LONG_SEED", "RECOVERBOT_CRASHES", "RECOVERBOT_LOAD_RATE", "RECOVERBOT_LOAD_SECONDS",
	"RECOVERBOT_HA", "RECOVERBOT_HA_SEED", "RECOVERBOT_HA_KEEP",
}

// KnownEnv lists every RECOVERBOT_* variable the program or its tests read:
// the settings (from Config, the one owner) and otherEnv.
func KnownEnv() []string {
	var out []string
	for _, s := range Settings() {
		if strings.HasPrefix(s[1], "RECOVERBOT_") {
			out = append(out, s[1])
		}
	}
	return append(out, otherEnv...)
}

// CheckEnv fails on a RECOVERBOT_* variable nobody reads, naming it and the
// closest known one: a misspelt setting would otherwise be ignored silently
// (a misspelt RECOVERBOT_MODE=full leaves the bot in dry-run). environ is os.Environ's form.
func CheckEnv(environ []string) error {
	known := KnownEnv()
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "RECOVERBOT_") || slices.Contains(known, name) {
			continue
		}
		best, bestD := "", -1
		for _, k := range known {
			if d := editDistance(name, k); bestD < 0 || d < bestD {
				best, bestD = k, d
			}
		}
		errs = append(errs, fmt.Errorf("%s is not a setting (did you mean %s? `recoverbot settings` lists them all)", name, best))
	}
	return errors.Join(errs...)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func (c *Config) applyEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() || f.Tag.Get("fileonly") == "true" {
			continue
		}
		name := "RECOVERBOT_" + strings.ToUpper(key(f))
		s := getenv(name)
		if s == "" {
			continue
		}
		fv := v.Field(i)
		switch fv.Interface().(type) {
		case string:
			fv.SetString(s)
		case time.Duration:
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%s: %q is not a Go duration (like 5m or 30s)", name, s)
			}
			fv.SetInt(int64(d))
		case float64:
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", name, s)
			}
			fv.SetFloat(x)
		case int:
			x, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%s: %q is not a whole number", name, s)
			}
			fv.SetInt(int64(x))
		default:
			// A field type added to Config without a case here would be
			// silently unsettable from the environment.
			return fmt.Errorf("%s: settings of type %s cannot be set from the environment", name, fv.Type())
		}
	}
	return nil
}

// Validate checks every setting and names the bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s (RECOVERBOT_%s): %s", k, strings.ToUpper(k), fmt.Sprintf(format, args...)))
	}
	if !recovery.Mode(c.Mode).Valid() {
		bad("mode", "%q is not dry-run, low-risk or full", c.Mode)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	} else if !isLoopback(host) {
		if c.IntakeToken == "" {
			bad("intake_token", "required when listening on %s (not loopback)", c.Listen)
		}
		if c.AdminTokens == "" {
			bad("admin_tokens", "required when listening on %s (not loopback): name[:SlackUserID]=token,…", c.Listen)
		}
		if c.AllowedHosts == "" {
			bad("allowed_hosts", "required when listening on %s (not loopback): the host names clients use to reach the bot (requests addressed to any other name are refused)", c.Listen)
		}
	}
	if c.IntakeToken != "" && len(c.IntakeToken) < MinTokenLen {
		bad("intake_token", "must be at least %d characters (it is %d)", MinTokenLen, len(c.IntakeToken))
	}
	if c.AdminToken != "" && len(c.AdminToken) < MinTokenLen {
		bad("admin_token", "must be at least %d characters (it is %d)", MinTokenLen, len(c.AdminToken))
	}
	if _, err := ParseAdminTokens(c.AdminTokens); err != nil {
		bad("admin_tokens", "%v", err)
	}
	if _, err := parseHosts(c.AllowedHosts); err != nil {
		bad("allowed_hosts", "%v", err)
	}
	if c.Data == "" {
		bad("data", "is required")
	}
	if c.ApprovalTimeout < 10*time.Second || c.ApprovalTimeout > 24*time.Hour {
		bad("approval_timeout", "%s is outside 10s..24h", c.ApprovalTimeout)
	}
	if c.AutoThreshold <= 0 || c.AutoThreshold > 1 {
		bad("auto_threshold", "%v is outside (0, 1]", c.AutoThreshold)
	}
	if c.AlertmanagerConfidence < 0 || c.AlertmanagerConfidence > 1 {
		bad("alertmanager_confidence", "%v is outside [0, 1]", c.AlertmanagerConfidence)
	}
	if c.DefaultCooldown < 0 {
		bad("default_cooldown", "must not be negative")
	}
	if c.Retention < 0 {
		bad("retention", "must not be negative (0 keeps everything)")
	}
	if c.LockWait <= 0 {
		bad("lock_wait", "must be positive")
	}
	if c.SilenceMax < MinSilenceMax || c.SilenceMax > MaxSilenceMax {
		bad("silence_max", "%s is outside 1m..24h", c.SilenceMax)
	}
	if c.Drivers != "real" && c.Drivers != "log" {
		bad("drivers", "%q is not real or log", c.Drivers)
	}
	for k, u := range map[string]string{"gateway_url": c.GatewayURL, "prometheus_url": c.PrometheusURL, "signal_webhook": c.SignalWebhook,
		"alertmanager_url": c.AlertmanagerURL} {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			bad(k, "%q is not an http(s) URL", u)
		}
	}
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") {
		bad("redis_url", "must be redis://host:port/db")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "%q is not text or json", c.LogFormat)
	}
	if c.SlackChannel != "" && !slackChannelID(c.SlackChannel) {
		bad("slack_channel", "%q is not a channel id (C… or G…, as in the channel's details; not #name)", c.SlackChannel)
	}
	if _, err := commands.ParseApprovers(c.SlackApprovers); err != nil {
		bad("slack_approvers", "%v", err)
	}
	if c.SlackSilence < time.Second || c.SlackSilence > 5*time.Minute {
		bad("slack_silence", "%s is outside 1s..5m", c.SlackSilence)
	}
	if c.SigningKey != "" && len(c.SigningKey) < commands.MinKeyLen {
		bad("signing_key", "must be at least %d bytes (it is %d)", commands.MinKeyLen, len(c.SigningKey))
	}
	if c.AIModel == "" || len(c.AIModel) > 100 || !printable(c.AIModel) {
		bad("ai_model", "%q is not a model name (1 to 100 printable characters without spaces, like %s)", c.AIModel, claude.DefaultModel)
	}
	if c.AITimeout < time.Second || c.AITimeout > time.Minute {
		bad("ai_timeout", "%s is outside 1s..1m", c.AITimeout)
	}
	if c.AIMaxConcurrent < 1 || c.AIMaxConcurrent > 64 {
		bad("ai_max_concurrent", "%d is outside 1..64", c.AIMaxConcurrent)
	}
	if c.AIPerMinute < 1 || c.AIPerMinute > 10000 {
		bad("ai_per_minute", "%d is outside 1..10000", c.AIPerMinute)
	}
	if c.AIFoldWindow < time.Second || c.AIFoldWindow > 24*time.Hour {
		bad("ai_fold_window", "%s is outside 1s..24h", c.AIFoldWindow)
	}
	if c.AIPromptBytes < recovery.MinPromptBytes || c.AIPromptBytes > 1<<20 {
		bad("ai_prompt_bytes", "%d is outside %d..1048576", c.AIPromptBytes, recovery.MinPromptBytes)
	}
	if c.BlastMaxAuto < 1 || c.BlastMaxAuto > 100000 {
		bad("blast_max_auto", "%d is outside 1..100000", c.BlastMaxAuto)
	}
	if c.BlastMaxTargets < 1 || c.BlastMaxTargets > 100000 {
		bad("blast_max_targets", "%d is outside 1..100000", c.BlastMaxTargets)
	}
	file := c.file
	if file == "" {
		file = "config"
	}
	if err := checkWindows(file, c.FreezeWindows); err != nil {
		errs = append(errs, err)
	}
	c.validateStore(bad)
	return errors.Join(errs...)
}

// validateStore checks the store and, for etcd, its connection and election.
func (c *Config) validateStore(bad func(k, format string, args ...any)) {
	switch c.Store {
	case StoreBbolt:
		return
	case StoreEtcd:
	default:
		bad("store", "%q is not bbolt or etcd", c.Store)
		return
	}
	// The etcd store owns these checks; here they are named by our keys.
	var se *etcdstore.SettingError
	for _, err := range unjoin(c.etcdConfig().Validate()) {
		if errors.As(err, &se) {
			bad("etcd_"+se.Setting, "%s", se.Msg)
		}
	}
	if c.LeaderTTL < 2*time.Second || c.LeaderTTL > time.Minute || c.LeaderTTL%time.Second != 0 {
		bad("leader_ttl", "%s is not whole seconds within 2s..1m (etcd leases are whole seconds)", c.LeaderTTL)
	}
}

// unjoin lists the errors errors.Join put together (none for nil).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// IsLoopback reports whether host (no port) names this machine only: the
// one rule for "loopback" of the bot's listen address, its Host checks and
// the demo page's address.
func IsLoopback(host string) bool { return isLoopback(host) }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func slackChannelID(s string) bool {
	if len(s) < 2 || len(s) > 24 || (s[0] != 'C' && s[0] != 'G') {
		return false
	}
	for _, c := range s[1:] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// SlackOptions returns the Slack settings: the config's, and the tokens and
// API URL from the environment only.
func (c *Config) SlackOptions(getenv func(string) string, log *slog.Logger) SlackOptions {
	approvers, _ := commands.ParseApprovers(c.SlackApprovers) // Validate refused bad ones
	return SlackOptions{
		BotToken: getenv("SLACK_BOT_TOKEN"), AppToken: getenv("SLACK_APP_TOKEN"), APIURL: getenv("SLACK_API_URL"),
		Channel: c.SlackChannel, Approvers: approvers, SigningKey: c.SigningKey, Silence: c.SlackSilence, Log: log,
	}
}

// Engine returns the engine settings (the AI advisor aside: see Advisor).
func (c *Config) Engine() recovery.Config {
	return recovery.Config{Mode: recovery.Mode(c.Mode), AutoThreshold: c.AutoThreshold,
		ApprovalTimeout: c.ApprovalTimeout, DefaultCooldown: c.DefaultCooldown, LockWait: c.LockWait,
		SilenceMax: c.SilenceMax, AITimeout: c.AITimeout, BlastMaxAuto: c.BlastMaxAuto, BlastMaxTargets: c.BlastMaxTargets,
		Windows: engineWindows(c.FreezeWindows),
		AIBudget: recovery.AIBudget{MaxConcurrent: c.AIMaxConcurrent, PerMinute: c.AIPerMinute,
			FoldWindow: c.AIFoldWindow, PromptBytes: c.AIPromptBytes}}
}

// Advisor returns the AI planner when ANTHROPIC_API_KEY is set (environment
// only, never the file), nil otherwise: without the key nothing of AI
// planning runs. ANTHROPIC_BASE_URL, the SDK's convention, overrides the
// endpoint. endpoint is the scheme and host it talks to, for the start-up
// log (the key and any credentials in the URL are never logged).
func (c *Config) Advisor(getenv func(string) string) (adv recovery.Advisor, endpoint string, err error) {
	key := getenv("ANTHROPIC_API_KEY")
	if key == "" {
		return nil, "", nil
	}
	base := getenv("ANTHROPIC_BASE_URL")
	endpoint = "https://api.anthropic.com"
	if base != "" {
		u, perr := url.Parse(base)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The value is not repeated: a URL may carry credentials.
			return nil, "", errors.New("ANTHROPIC_BASE_URL is not an http(s) URL like https://api.anthropic.com")
		}
		endpoint = u.Scheme + "://" + u.Host
	}
	return claude.New(key, base, c.AIModel), endpoint, nil
}

// MinTokenLen is the shortest bearer token accepted at start-up: 16
// characters of a random token are beyond guessing over HTTP; shorter ones
// ("adm", "secret") are placeholders that ended up in production.
const MinTokenLen = 16

// The range of silence_max: under a minute a silence would end before most
// remediations do; a day is the cap, so a silence whose expiry failed, or
// whose bot died, never hides an incident longer than that.
const (
	MinSilenceMax = time.Minute
	MaxSilenceMax = 24 * time.Hour
)

// AdminToken is one credential of the admin API and whom it belongs to.
type AdminToken struct {
	Name    string // the person or system: what the audit records
	SlackID string // optional: the owner's Slack user id (U…/W…); they then act as that Slack user
	Token   string
}

// ParseAdminTokens reads RECOVERBOT_ADMIN_TOKENS: comma-separated
// name[:SlackUserID]=token entries. Names are 1-64 letters, digits and
// . _ - @, unique; Slack ids are user ids (U…, W…), not groups; tokens are
// at least MinTokenLen characters without spaces, unique. An error never
// repeats a token.
func ParseAdminTokens(s string) ([]AdminToken, error) {
	var out []AdminToken
	names, tokens := map[string]bool{}, map[string]bool{}
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		who, tok, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("entry %d has no \"=\": want name[:SlackUserID]=token", i+1)
		}
		name, slackID, _ := strings.Cut(who, ":")
		t := AdminToken{Name: name, SlackID: slackID, Token: tok}
		switch {
		case !validTokenName(name):
			return nil, fmt.Errorf("entry %d: name %q must be 1-64 letters, digits and . _ - @", i+1, cutName(name))
		case names[name]:
			return nil, fmt.Errorf("entry %d: name %q is given twice", i+1, name)
		case strings.Contains(who, ":") && (!commands.ValidApproverID(slackID) || slackID[0] == 'S'):
			return nil, fmt.Errorf("entry %d (%s): %q is not a Slack user id (U… or W…)", i+1, name, cutName(slackID))
		case len(tok) < MinTokenLen:
			return nil, fmt.Errorf("entry %d (%s): the token must be at least %d characters (it is %d)", i+1, name, MinTokenLen, len(tok))
		case strings.ContainsAny(tok, " \t\r\n"):
			return nil, fmt.Errorf("entry %d (%s): the token holds whitespace", i+1, name)
		case tokens[tok]:
			return nil, fmt.Errorf("entry %d (%s): the same token is given to another name", i+1, name)
		}
		names[name], tokens[tok] = true, true
		out = append(out, t)
	}
	return out, nil
}

func validTokenName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return false
		}
	}
	return true
}

func cutName(s string) string { return recovery.CutText(s, 64) }

// parseHosts reads RECOVERBOT_ALLOWED_HOSTS: comma-separated host names or
// IP addresses, without scheme or port (the port is not checked).
func parseHosts(s string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/:@ ") && net.ParseIP(h) == nil {
			return nil, fmt.Errorf("%q is not a host name (no scheme, port or path: like bot.example.com)", cutName(h))
		}
		out = append(out, h)
	}
	return out, nil
}

// ValidateServe checks what only the server needs: an unnamed
// RECOVERBOT_ADMIN_TOKEN alone would leave the admin API without credentials
// (open to every local user), so it is refused rather than ignored.
func (c *Config) ValidateServe() error {
	if c.AdminToken != "" && c.AdminTokens == "" {
		return errors.New("config admin_token (RECOVERBOT_ADMIN_TOKEN) is the token the CLI presents; the server takes named tokens: set RECOVERBOT_ADMIN_TOKENS=name[:SlackUserID]=token,… (README \"Admin tokens\")")
	}
	return nil
}

// API returns the HTTP settings of the bot (tokens, allowed hosts), as
// Validate accepted them.
func (c *Config) API() (tokens []AdminToken, hosts []string) {
	tokens, _ = ParseAdminTokens(c.AdminTokens)
	hosts, _ = parseHosts(c.AllowedHosts)
	return tokens, hosts
}
