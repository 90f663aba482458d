package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

func newMediaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "media upload",
		Short: "Upload an image or document to Kaleyra once, to send it by media id",
		Long: `WhatsApp sends media by link (fetched from your host for every message) or by a media id
(uploaded once). "wabulk media upload" uploads a file and prints its id; --media-file on enqueue
and send does the same for a campaign, once per sender, with a cache in Redis.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newMediaUploadCmd())
	return cmd
}

func newMediaUploadCmd() *cobra.Command {
	var from, mimeType string
	cmd := &cobra.Command{
		Use:   "upload FILE [--from NUMBER] [--type MIME]",
		Short: "Upload a file through Kaleyra's Upload Media Files API and print its media id on stdout",
		Long: `upload checks FILE against WhatsApp's limits, uploads it through Kaleyra's Upload Media Files
API for the business number --from (default KALEYRA_FROM), and prints the media id on stdout, for
the media_id column or --media-id. The type is found from the file's content unless --type gives
it. A media id works only from the number that uploaded it, for 30 days. Needs KALEYRA_SID and
KALEYRA_API_KEY; uploads always, without the cache of --media-file (no Redis needed).

Limits: ` + media.Supported + `.
Exit status: 0 uploaded, 2 refused or failed.`,
		Example: `  wabulk media upload brochure.pdf
  id=$(wabulk media upload --from +919000000001 banner.jpg)
  wabulk media upload --type audio/mp4 voice-note.mp4`,
		Args: cobra.ExactArgs(1),
	}
	// No --http-timeout: an upload has its own, longer bound (kaleyra.Config.UploadTimeout).
	load := withEnvFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		id, err := mediaUpload(cmd.Context(), c, args[0], from, mimeType, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), id)
		return nil
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "business number that will send the media (default KALEYRA_FROM)")
	f.StringVar(&mimeType, "type", "", "MIME type of the file, e.g. audio/mp4 (default: found from its content)")
	return cmd
}

// mediaUpload checks the file, then uploads it for from (or KALEYRA_FROM) and returns the id.
func mediaUpload(ctx context.Context, c config.Config, path, from, mimeType string, stderr io.Writer) (string, error) {
	f, err := media.Open(path, mimeType)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(from) == "" {
		from = c.From
	}
	if strings.TrimSpace(from) == "" {
		return "", errors.New("give the business number with --from or " + config.EnvFrom)
	}
	sender, err := job.NormalizeNumber(from)
	if err != nil {
		return "", fmt.Errorf("--from: %w", err)
	}
	u, err := mediaUploader(c, nil)
	if err != nil {
		return "", err
	}
	id, _, err := u.ID(ctx, sender, f)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "uploaded %s (%s, %d bytes) from %s\n", f.Name, f.MIME, f.Size, sender)
	return id, nil
}

// kaleyraConfig is the Kaleyra client's configuration, checked for what a call needs.
func kaleyraConfig(c config.Config) (kaleyra.Config, error) {
	if err := errors.Join(c.Check(), c.RequireKaleyra()); err != nil {
		return kaleyra.Config{}, err
	}
	return kaleyra.Config{SID: c.SID, APIKey: c.APIKey.Reveal(), Region: c.Region, BaseURL: c.BaseURL, Timeout: c.HTTPTimeout}, nil
}

// mediaUploader is an Uploader on the configured Kaleyra account; cache may be nil.
func mediaUploader(c config.Config, cache *store.Ledger) (*media.Uploader, error) {
	kc, err := kaleyraConfig(c)
	if err != nil {
		return nil, fmt.Errorf("--media-file and media upload call Kaleyra: %w", err)
	}
	client, err := kaleyra.New(kc)
	if err != nil {
		return nil, err
	}
	return media.NewUploader(media.Config{Kaleyra: client, Cache: cache})
}
