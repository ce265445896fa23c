#!/bin/sh
# Render /etc/nginx/templates/*.template into /etc/nginx/conf.d/*, substituting only the variables
# set in the environment (nginx's own $variables stay), as the official nginx image does; then exec
# the command, so nginx runs as PID 1 and receives the stop signal.
set -eu
templates=/etc/nginx/templates
if [ -d "$templates" ]; then
    defined=$(env | cut -d= -f1 | sed 's/.*/${&}/' | tr '\n' ' ')
    for template in "$templates"/*.template; do
        [ -e "$template" ] || continue
        out="/etc/nginx/conf.d/$(basename "$template" .template)"
        envsubst "$defined" <"$template" >"$out"
        echo "nginx-entrypoint: rendered $template to $out"
    done
fi
exec "$@"
