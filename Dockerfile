# valuestream worker image: `docker build -t valuestream .`
# The same install as the README's (pip install of this project); state in a volume.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 valuestream \
    && mkdir -p /var/lib/valuestream && chown valuestream /var/lib/valuestream
WORKDIR /opt/valuestream
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY schemas schemas
RUN pip install --no-cache-dir .

USER valuestream
ENV VALUESTREAM_DATA_DIR=/var/lib/valuestream \
    VALUESTREAM_WEB_BIND=0.0.0.0 \
    VALUESTREAM_WEB_PORT=6066
VOLUME ["/var/lib/valuestream"]
EXPOSE 6066
ENTRYPOINT ["valuestream"]
CMD ["worker"]
