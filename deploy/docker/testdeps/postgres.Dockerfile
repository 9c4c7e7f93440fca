# postgres.Dockerfile - a stand-in for the official postgres:15 image, built
# from Debian's postgresql-15 for machines that reach no container registry
# (CI). Build context: this folder. It honours what deploy/compose.yaml uses
# of the official image: POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB,
# PGDATA, pg_isready and psql on PATH, port 5432. Test use only.
FROM debian:bookworm-slim
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
	&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
	&& mkdir -p /var/lib/postgresql/data /var/run/postgresql \
	&& chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
	&& chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
